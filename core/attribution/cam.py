"""Grad-CAM (CNNs, and ViTs through their patch-token grid) and attention rollout (timm ViTs).

Both produce a coarse spatial map (the CNN stage's resolution or the patch grid) that is
upsampled bilinearly to the input size and given to every channel.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from ._image import upsample_map
from .base import AttributionError, ParamSpec, PassEstimate, Subject, cnn_stages, has_standard_attention, register, vit_parts

GRADCAM_LAYERS = ("auto", "last", "second-last")
#: "auto" skips CNN stages whose map is smaller than this per side: a 2×2 map cannot localise
MIN_CAM_SIDE = 4


def _stage_sides(model, names: list[str], input_shape: tuple[int, ...]) -> list[int]:
    """The smaller side of each named stage's output for one input of ``input_shape`` [C, H, W]."""
    modules = dict(model.named_modules())
    sides: dict[str, int] = {}
    handles = [modules[n].register_forward_hook(
        lambda _m, _i, out, n=n: sides.__setitem__(n, int(min(out.shape[-2:])) if out.ndim == 4 else 0)) for n in names]
    try:
        with torch.inference_mode():
            model(torch.zeros((1, *input_shape)))
    finally:
        for h in handles:
            h.remove()
    return [sides.get(n, 0) for n in names]


def gradcam_layer(model, layer: str = "auto", input_shape: tuple[int, ...] | None = None
                  ) -> tuple[torch.nn.Module, str, dict | None]:
    """The module whose output Grad-CAM reads, its name, and the ViT facts (None for a CNN).

    CNN: the last (or second-last) spatial stage (timm ``feature_info``, else the last Conv2d);
    "auto" takes the deepest stage whose map is at least 4×4 for an input of ``input_shape``
    [C, H, W] (the last stage of a ResNet is 2×2 on a 64×64 image, 7×7 on 224×224).
    ViT: the patch tokens coming out of a block, without the prefix tokens, reshaped to the patch
    grid. A class-token (or attention-pooled) ViT reads only its prefix token after the last block,
    so the patch tokens *leaving* the last block get no gradient at all; "last" therefore means the
    tokens *entering* the last block (the output of the block before it), as pytorch-grad-cam's
    ``blocks[-1].norm1`` does. A mean-pooled ViT uses the last block's output itself."""
    if layer not in GRADCAM_LAYERS:
        raise AttributionError(f"Grad-CAM layer must be one of {', '.join(GRADCAM_LAYERS)}, got {layer!r}.")
    back = 1 if layer == "second-last" else 0
    parts = vit_parts(model)
    if parts is not None:
        blocks = parts["blocks"]
        prefix_pooled = parts["prefix"] > 0 and parts["pool"] not in ("avg", "avgmax", "max")
        idx = len(blocks) - 1 - back - (1 if prefix_pooled else 0)
        if idx < 0:
            raise AttributionError(f"This ViT has {len(blocks)} blocks, too few for Grad-CAM at the '{layer}' layer.")
        return blocks[idx], f"blocks.{idx}", parts
    stages = cnn_stages(model)
    if len(stages) <= back:
        raise AttributionError(f"Grad-CAM needs a spatial feature map; this model has {len(stages)} convolutional stage(s), "
                               f"too few for the '{layer}' layer.")
    name = stages[-1 - back]
    if layer == "auto" and input_shape is not None:
        sides = _stage_sides(model, stages, tuple(input_shape))
        fine = [n for n, side in zip(stages, sides) if side >= MIN_CAM_SIDE]
        name = fine[-1] if fine else stages[-1]
    return dict(model.named_modules())[name], name, None


def _as_grid(act: torch.Tensor, parts: dict | None) -> torch.Tensor:
    """A layer output as a spatial map [B, D, h, w] (ViT tokens without the prefix, on the patch grid)."""
    if parts is None:
        if act.ndim != 4:
            raise AttributionError(f"Grad-CAM expected a 4-D feature map [B, C, h, w], got shape {tuple(act.shape)}.")
        return act
    gh, gw = parts["grid"]
    tokens = act[:, parts["prefix"]:]
    if tokens.shape[1] != gh * gw:
        raise AttributionError(f"The ViT has {tokens.shape[1]} patch tokens, not the {gh}×{gw} grid of its patch embedding.")
    return tokens.transpose(1, 2).reshape(act.shape[0], act.shape[2], gh, gw)


def _gradcam_cost(facts, params) -> PassEstimate:
    return PassEstimate(forward=1, backward=1)


@register("gradcam", "Grad-CAM", "class-activation", {"gradients", "images", "spatial-layer"},
          "Selvaraju et al., ICCV 2017",
          params=(ParamSpec("layer", "auto", "choice", "Which spatial layer: the last convolutional stage (ViT: the patch "
                            "tokens entering the last block), the one before it (a finer grid in a CNN), or 'auto': the "
                            "deepest CNN stage whose map is at least 4×4 (the last one for a ViT).",
                            choices=GRADCAM_LAYERS),),
          cost=_gradcam_cost)
def gradcam(subject: Subject, params: dict):
    """Grad-CAM: ReLU(Σ_k α_k A_k) with α_k = mean over positions of ∂y_c/∂A_k, where A is a spatial
    feature map (a CNN stage, or a ViT's patch tokens reshaped to the patch grid) and y_c the
    target logit; upsampled bilinearly to the input size, the same value in every channel. One
    forward and one backward pass per sample."""
    x = subject.x
    module, name, parts = gradcam_layer(subject.model, params["layer"], tuple(x.shape[1:]))
    n, c, h, w = x.shape
    out = torch.zeros((n, h, w))
    store: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        store["act"] = output

    handle = module.register_forward_hook(hook)
    try:
        step = subject.rows_per_batch(gradient=True)
        t = torch.as_tensor(subject.targets)
        for s in range(0, n, step):
            e = min(n, s + step)
            with torch.enable_grad():
                xb = x[s:e].detach().clone().requires_grad_(True)  # keeps the graph alive through frozen stems
                logits = subject.model(xb)
                act = store.pop("act")
                (grad,) = torch.autograd.grad(logits.gather(1, t[s:e, None]).sum(), act)
            a, g = _as_grid(act.detach(), parts), _as_grid(grad, parts)
            cam = (g.mean(dim=(2, 3), keepdim=True) * a).sum(1).clamp_min(0.0)
            out[s:e] = upsample_map(cam, h, w)
            subject.report(e / n)
    finally:
        handle.remove()
    return np.broadcast_to(out.numpy()[:, None], x.shape).astype(np.float32), {"layer": name}


# ---------------------------------------------------------------------------------------------- rollout
@contextmanager
def attention_maps(model):
    """Record every block's attention probabilities [B, heads, T, T] during a forward pass.

    timm's fused attention (``F.scaled_dot_product_attention``) never materialises them, so a
    pre-hook on each ``Attention`` recomputes softmax(q·kᵀ·scale) from the block's own ``qkv``
    projection (and q/k norms) on the same input. Nothing in the model is changed: the forward
    pass stays fused, only hooks are added, and they are removed on exit."""
    parts = vit_parts(model)
    if parts is None or not has_standard_attention(model):
        raise AttributionError("Attention rollout needs a timm Vision Transformer whose blocks use the standard "
                               "Attention module (a fused qkv projection).")
    maps: list[torch.Tensor] = []
    handles = []

    def pre_hook(attn, args, kwargs):
        if kwargs.get("attn_mask") is not None or kwargs.get("is_causal"):
            raise AttributionError("Attention rollout does not support attention masks.")
        xin = args[0]
        b, t, d = xin.shape
        heads = attn.num_heads
        head_dim = getattr(attn, "head_dim", d // heads)
        qkv = attn.qkv(xin).reshape(b, t, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        q, k = qkv[0], qkv[1]
        q, k = attn.q_norm(q), attn.k_norm(k)
        scale = getattr(attn, "scale", head_dim ** -0.5)
        maps.append(((q * scale) @ k.transpose(-2, -1)).softmax(-1).detach())

    try:
        for blk in parts["blocks"]:
            handles.append(blk.attn.register_forward_pre_hook(pre_hook, with_kwargs=True))
        yield maps
    finally:
        for hnd in handles:
            hnd.remove()


def rollout(maps: list[torch.Tensor], head_fusion: str = "mean") -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): with Ā_l = rownorm(½·A_l + ½·I), A_l the attention
    of block l fused over heads, rollout = Ā_L ⋯ Ā_1 [B, T, T]."""
    result = None
    for a in maps:
        if head_fusion == "mean":
            fused = a.mean(1)
        elif head_fusion == "max":
            fused = a.amax(1)
        elif head_fusion == "min":
            fused = a.amin(1)
        else:
            raise AttributionError(f"head_fusion must be 'mean', 'max' or 'min', got {head_fusion!r}.")
        eye = torch.eye(fused.shape[-1], dtype=fused.dtype)
        bar = 0.5 * fused + 0.5 * eye
        bar = bar / bar.sum(-1, keepdim=True)
        result = bar if result is None else bar @ result
    return result


@register("attention-rollout", "Attention rollout", "attention", {"images", "attention"},
          "Abnar & Zuidema, ACL 2020",
          params=(ParamSpec("head_fusion", "mean", "choice", "How the heads of a block are combined: the paper averages "
                            "them; max/min are common variants.", choices=("mean", "max", "min")),),
          cost=lambda facts, params: PassEstimate(forward=1))
def attention_rollout(subject: Subject, params: dict):
    """Attention rollout: multiply the blocks' head-averaged attention matrices, each mixed half and
    half with the identity for the residual path and renormalised, Ā_L ⋯ Ā_1, and read the class
    token's row over the patch tokens (without a class token: the mean of the patch rows), reshaped
    to the patch grid and upsampled. It does not depend on the target class. One forward pass."""
    parts = vit_parts(subject.model)
    x = subject.x
    n, c, h, w = x.shape
    gh, gw = parts["grid"] if parts else (0, 0)
    prefix = parts["prefix"] if parts else 0
    out = torch.zeros((n, h, w))
    step = subject.rows_per_batch()
    for s in range(0, n, step):
        e = min(n, s + step)
        with attention_maps(subject.model) as maps, torch.inference_mode():
            subject.model(x[s:e])
        r = rollout(maps, params["head_fusion"])
        if r.shape[-1] != prefix + gh * gw:
            raise AttributionError(f"The attention covers {r.shape[-1]} tokens, not {prefix} prefix + {gh}×{gw} patches.")
        rows = r[:, 0, prefix:] if prefix > 0 else r[:, :, :].mean(1)
        out[s:e] = upsample_map(rows.reshape(e - s, gh, gw), h, w)
        subject.report(e / n)
    return np.broadcast_to(out.numpy()[:, None], x.shape).astype(np.float32), {}
