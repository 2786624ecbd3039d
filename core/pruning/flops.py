"""Analytical multiply-accumulate counts (MACs) of a timm ViT with given token counts.

Per block with N tokens entering attention and M tokens entering the MLP (M < N when the block
prunes or merges between its attention and its MLP, which is where every pruner here acts):

    attention  = N·D·3A  (qkv)  +  2·N²·A  (q·kᵀ and attn·v)  +  N·A·D  (proj)
    MLP        = M·(D·F + F·D)  (fc1 and fc2 of hidden width F)

with D the embedding width and A = heads × head width (A = D in every standard ViT). For
DeiT-S (N = 197, D = 384, F = 1536, 12 blocks) this is 12·(12ND² + 2N²D) = 4.54 G; the patch
embedding (196·768·384 = 57.8 M) and the head (384·1000) bring it to 4.60 GMACs, timm's figure.
The attention matmuls are counted analytically because hook-based counters miss fused SDPA.
The patch embedding is counted from its layers' output shapes (a conv stem counts every conv);
normalisation, activations and softmax are not counted, as in timm's and fvcore's tables.
"""
from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
from torch import nn

from .base import ModelInfo, PruningError, inspect_model

_EMBED_MACS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def block_macs(info: ModelInfo, n_attn: int, n_mlp: int | None = None) -> int:
    """MACs of one transformer block with ``n_attn`` tokens in attention and ``n_mlp`` in the MLP."""
    n_mlp = n_attn if n_mlp is None else n_mlp
    attention = n_attn * info.dim * 3 * info.attn_dim + 2 * n_attn * n_attn * info.attn_dim + n_attn * info.attn_dim * info.dim
    return int(attention + n_mlp * info.mlp_macs_per_token)


@torch.no_grad()
def patch_embed_macs(model) -> int:
    """MACs of ``model.patch_embed`` on one image of the model's input size (every Conv2d and Linear
    inside it, from their output shapes). Computed once per module."""
    embed = model.patch_embed
    cached = _EMBED_MACS.get(embed)
    if cached is not None:
        return cached
    total = [0]

    def conv_hook(mod: nn.Conv2d, _inp, out):
        kh, kw = mod.kernel_size
        total[0] += out[0].numel() * (mod.in_channels // mod.groups) * kh * kw

    def linear_hook(mod: nn.Linear, _inp, out):
        total[0] += out[0].numel() * mod.in_features

    hooks = []
    for m in embed.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    modes = {m: m.training for m in embed.modules()}
    try:
        embed.eval()  # a conv stem's BatchNorm must not update its running statistics on the probe
        param = next(embed.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        device = param.device if param is not None else "cpu"
        h, w = embed.img_size
        first_conv = next((m for m in embed.modules() if isinstance(m, nn.Conv2d)), None)
        channels = first_conv.in_channels if first_conv is not None else 3
        embed(torch.zeros(1, channels, h, w, dtype=dtype, device=device))
    finally:
        for hook in hooks:
            hook.remove()
        for m, mode in modes.items():
            m.train(mode)
    _EMBED_MACS[embed] = int(total[0])
    return int(total[0])


def head_macs(model) -> int:
    """MACs of the classifier(s) on one image: the linear head, and the distillation head of a distilled DeiT."""
    total = 0
    for name in ("head", "head_dist"):
        head = getattr(model, name, None)
        if isinstance(head, nn.Linear):
            total += head.in_features * head.out_features
    return int(total)


def fixed_macs(model) -> int:
    """The MACs no pruner changes: patch embedding plus head(s)."""
    return patch_embed_macs(model) + head_macs(model)


def _counts(name: str, values, depth: int) -> list[int]:
    try:
        out = [int(v) for v in values]
    except (TypeError, ValueError):
        raise PruningError(f"{name} must be a list of {depth} token counts (one per block), got {values!r}.") from None
    if len(out) != depth:
        raise PruningError(f"{name} must hold one token count per block ({depth}), got {len(out)}.")
    if any(v < 1 for v in out):
        raise PruningError(f"{name} must hold positive token counts, got {out}.")
    return out


def vit_flops(model, tokens_per_block: Sequence[int] | None = None,
              mlp_tokens_per_block: Sequence[int] | None = None) -> float:
    """MACs of one image through ``model`` (a supported timm ViT), analytically.

    ``tokens_per_block``: the tokens entering each block's attention (default: no pruning, every
    block sees all prefix and patch tokens). ``mlp_tokens_per_block``: the tokens entering each
    block's MLP (default: the same as its attention; pass the pruned session's
    ``mlp_tokens_per_block`` to count a pruner that acts between attention and MLP).
    Returns MACs (multiply-accumulates) as a float: 4.6e9 for DeiT-S.
    """
    info = inspect_model(model)
    if tokens_per_block is None:
        attn = [info.n_tokens] * info.depth
    else:
        attn = _counts("tokens_per_block", tokens_per_block, info.depth)
    mlp = attn if mlp_tokens_per_block is None else _counts("mlp_tokens_per_block", mlp_tokens_per_block, info.depth)
    return float(fixed_macs(model) + sum(block_macs(info, a, m) for a, m in zip(attn, mlp)))


__all__ = ["block_macs", "fixed_macs", "head_macs", "patch_embed_macs", "vit_flops"]
