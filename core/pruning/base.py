"""The pruning family's error, registry and model inspection.

:func:`inspect_model` reads what every pruner needs from a timm ``VisionTransformer`` (prefix
tokens, patch grid, depth, heads, widths) and refuses, with a sentence naming what is supported,
anything it cannot patch safely (a CNN, a ViT whose blocks or attention are not timm's standard
pre-norm ``Block``/``Attention``, attention pooling, ...).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from core.errors import UserError
from core.spec import Capabilities, MethodSpec, Registry

SUPPORTED = ("timm VisionTransformer models built from the standard pre-norm Block with timm's Attention: ViT, DeiT "
             "(with or without a distillation token), ViTs with register tokens, and the shipped 'shapes-vit'")


class PruningError(UserError):
    """A model, method or budget the pruning module cannot use; the message is meant for the user."""


#: every need a pruner may declare -> the phrase completing "<method> needs ..."
NEEDS = {
    "vit": "a Vision Transformer it can patch",
    "cls": "a class token: it ranks tokens by the class token's attention row",
}
GROUPS = ("importance", "merging", "baseline")


def _check(spec: MethodSpec, caps: Capabilities) -> str | None:
    """Family check: the model must be a supported ViT (and have a class token where the method reads it)."""
    info = caps.facts.get("info")
    reason = caps.facts.get("model_reason")
    if reason:
        return f"{spec.name} cannot run on this model: {reason}"
    if info is not None and "cls" in spec.needs and not info.has_cls:
        return (f"{spec.name} ranks tokens by the class token's attention, and this ViT has no class token "
                f"(global pool '{info.global_pool}'); use Zero-TPrune, ToMe or random instead.")
    return None


REGISTRY: Registry[MethodSpec] = Registry(
    "pruning", noun="method", error=PruningError, groups=GROUPS, needs=NEEDS,
    order=("zero-tprune", "tome", "evit", "topk-cls", "random"), check=_check)


@dataclass(frozen=True)
class ModelInfo:
    """What the pruners need to know about a ViT.

    ``n_prefix``: tokens before the patches (CLS, distillation, registers), never pruned;
    ``n_patches`` and ``grid`` (rows, cols) of the patch tokens; ``depth``; ``num_heads``,
    ``head_dim``; ``dim`` (embedding width); ``attn_dim`` (heads × head width); ``mlp_in``/
    ``mlp_hidden``/``mlp_out``: MACs per token of the MLP are ``mlp_in·fc1_out + fc2_in·mlp_out``.
    """

    n_prefix: int
    n_patches: int
    grid: tuple[int, int]
    depth: int
    num_heads: int
    head_dim: int
    dim: int
    attn_dim: int
    mlp_macs_per_token: int
    has_cls: bool
    has_dist: bool
    n_registers: int
    global_pool: str
    img_size: tuple[int, int]

    @property
    def n_tokens(self) -> int:
        return self.n_prefix + self.n_patches


def _model_name(model) -> str:
    """How messages name the model: its card's name in quotes, else "this <class>"."""
    card = getattr(model, "card", None)
    if isinstance(card, dict) and card.get("name"):
        return f"'{card['name']}'"
    return f"this {type(model).__name__}"


def unsupported_reason(model) -> str | None:
    """Why ``model`` cannot be patched by the pruners (None when it can)."""
    from timm.layers import Attention
    from timm.models.vision_transformer import Block, VisionTransformer

    name = _model_name(model)
    if not isinstance(model, nn.Module):
        return f"{name} is not a torch model; token pruning works on {SUPPORTED}."
    if not isinstance(model, VisionTransformer):
        cls = type(model).__name__
        if hasattr(model, "blocks") or any(w in cls.lower() for w in ("transformer", "vit", "eva", "deit", "former")):
            return (f"{name} is a transformer the pruners cannot patch (its blocks or token layout differ "
                    f"from timm's VisionTransformer); token pruning works on {SUPPORTED}.")
        kind = "a CNN" if any(isinstance(m, nn.Conv2d) for m in model.modules()) else f"a {cls}"
        return (f"{name} is {kind}, not a Vision Transformer: it has no tokens to prune. Token pruning works on "
                f"{SUPPORTED}.")
    if getattr(model, "attn_pool", None) is not None:
        return (f"{name} pools its tokens with attention (global_pool='{model.global_pool}'), which the pruners "
                f"do not support; supported are {SUPPORTED} with 'token' or average pooling.")
    if getattr(model, "dynamic_img_size", False):
        return f"{name} resizes its position embedding per input (dynamic_img_size), which the pruners do not support."
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.Sequential) or len(blocks) == 0:
        return f"{name} has no sequence of transformer blocks; supported are {SUPPORTED}."
    for i, blk in enumerate(blocks):
        if not isinstance(blk, Block) or type(blk).forward is not Block.forward:
            return (f"block {i} of {name} is a {type(blk).__name__}, not timm's standard pre-norm Block; supported "
                    f"are {SUPPORTED}.")
        attn = getattr(blk, "attn", None)
        if not isinstance(attn, Attention) or type(attn).forward is not Attention.forward:
            return (f"block {i} of {name} uses {type(attn).__name__} attention, not timm's Attention; supported are "
                    f"{SUPPORTED}.")
    if getattr(model, "global_pool", "token") not in ("token", "avg", "max", "avgmax", ""):
        return f"{name} uses global pooling '{model.global_pool}'; the pruners support 'token' and average/max pooling."
    return None


def inspect_model(model) -> ModelInfo:
    """The facts of a supported ViT; :class:`PruningError` naming what is supported otherwise."""
    reason = unsupported_reason(model)
    if reason:
        raise PruningError(reason[0].upper() + reason[1:])
    blk = model.blocks[0]
    attn = blk.attn
    grid = tuple(int(g) for g in model.patch_embed.grid_size)
    n_patches = grid[0] * grid[1]
    has_cls = getattr(model, "cls_token", None) is not None
    has_dist = getattr(model, "dist_token", None) is not None
    n_prefix = int(model.num_prefix_tokens)
    n_reg = n_prefix - int(has_cls) - int(has_dist)
    mlp = blk.mlp
    fc1, fc2 = getattr(mlp, "fc1", None), getattr(mlp, "fc2", None)
    if not isinstance(fc1, nn.Linear) or not isinstance(fc2, nn.Linear):
        raise PruningError(f"The MLP of {_model_name(model)} is a {type(mlp).__name__} without fc1/fc2 linear layers; "
                           f"supported are {SUPPORTED}.")
    img = model.patch_embed.img_size
    return ModelInfo(
        n_prefix=n_prefix, n_patches=n_patches, grid=grid, depth=len(model.blocks), num_heads=int(attn.num_heads),
        head_dim=int(attn.head_dim), dim=int(model.embed_dim), attn_dim=int(attn.num_heads * attn.head_dim),
        mlp_macs_per_token=int(fc1.in_features * fc1.out_features + fc2.in_features * fc2.out_features),
        has_cls=has_cls, has_dist=has_dist, n_registers=n_reg, global_pool=str(model.global_pool),
        img_size=(int(img[0]), int(img[1])) if img is not None else (0, 0))


def capabilities(model) -> Capabilities:
    """What ``model`` offers the pruners: the needs it meets, and the facts (``info``, ``n_patches``,
    ``depth``, ``r_max`` for ToMe) that bound parameters."""
    reason = unsupported_reason(model)
    if reason:
        return Capabilities(has=frozenset(), why_not={"vit": reason.rstrip(".")}, facts={"model_reason": reason})
    info = inspect_model(model)
    has = {"vit"} | ({"cls"} if info.has_cls else set())
    why = {} if info.has_cls else {"cls": f"this ViT has no class token (global pool '{info.global_pool}')"}
    return Capabilities(has=frozenset(has), why_not=why, facts={"info": info, **facts_of(info)})


def facts_of(info: ModelInfo) -> dict:
    """The numbers that bound the pruners' parameters: patch tokens, depth, last block index, ToMe's largest r."""
    from .schedule import tome_r_max  # schedule imports this module

    return {"n_patches": info.n_patches, "depth": info.depth, "max_block": info.depth - 1,
            "r_max": tome_r_max(info.n_patches, info.depth)}


__all__ = ["GROUPS", "NEEDS", "REGISTRY", "SUPPORTED", "ModelInfo", "PruningError", "capabilities", "facts_of",
           "inspect_model", "unsupported_reason"]
