"""Token pruning and merging for timm Vision Transformers: Zero-TPrune, ToMe, EViT, top-k by CLS
attention and a random floor, with analytical MACs, measured throughput and a ground truth.

>>> from core import pruning
>>> pruning.available()
['zero-tprune', 'tome', 'evit', 'topk-cls', 'random']
>>> with pruning.apply(model, "zero-tprune", keep_rate=0.7) as session:    # doctest: +SKIP
...     logits = model(x)
>>> session.tokens_per_block, pruning.vit_flops(model, session.tokens_per_block,
...                                             session.mlp_tokens_per_block)  # doctest: +SKIP

Design
------
- One registry (:data:`REGISTRY`, on :class:`core.spec.Registry`): every method declares its
  parameters (:class:`~core.spec.ParamSpec`), what it needs ("vit": a patchable timm ViT; "cls":
  a class token) and a description with the formula and the paper. :func:`unavailable_reason`
  says why a method does not apply to a model (a CNN, an unsupported ViT variant, no class token).
- :func:`apply` patches the model's blocks in place inside a ``with`` block and restores them
  exactly on exit. Every method acts between a block's attention and its MLP, on patch tokens
  only: class, distillation and register tokens (``model.num_prefix_tokens``) are never pruned.
- Token counts depend on the budget only (:mod:`~core.pruning.schedule`), so :func:`vit_flops`
  and :func:`match_budget` know a configuration's MACs before running it.
- :func:`wpr` is Zero-TPrune's Weighted PageRank on its own.
- :func:`run_sweep` (in :mod:`~core.pruning.sweep`) is the page's workflow: accuracy, MACs and
  measured images/s per (method, budget), agreement between methods, per-layer importances and
  the object-token retention on the Shapes world.
"""
from __future__ import annotations

from core.spec import Capabilities, MethodSpec

from . import methods  # noqa: F401  (registers the methods)
from .base import REGISTRY, SUPPORTED, ModelInfo, PruningError, inspect_model, unsupported_reason
from .base import capabilities as _capabilities
from .flops import block_macs, fixed_macs, head_macs, patch_embed_macs, vit_flops
from .methods import Pruner
from .patch import LayerTrace, PruningSession, apply, retention_weights
from .schedule import Plan, default_layers, keep_count
from .tokens import ACTIONS, DROPPED, DROPPED_SIMILAR, FUSED, KEPT, MERGED
from .wpr import wpr


def available() -> list[str]:
    """Ids of every pruning method, in a stable display order."""
    return REGISTRY.available()


def spec(name: str) -> MethodSpec:
    """The registry entry of method ``name`` (id, name, group, description, reference, needs, params)."""
    return REGISTRY.spec(name)


def specs() -> list[MethodSpec]:
    return REGISTRY.specs()


def capabilities(model) -> Capabilities:
    """What ``model`` offers the pruners (for :meth:`core.spec.Registry.unavailable_reason` and parameter bounds)."""
    return _capabilities(model)


def unavailable_reason(name: str, model) -> str | None:
    """Why method ``name`` cannot run on ``model``, as a sentence naming what is supported; None when it can."""
    return REGISTRY.unavailable_reason(name, _capabilities(model))


def param_bounds(name: str, model) -> dict[str, float]:
    """Upper bounds the model sets on method ``name``'s parameters (e.g. ToMe's largest constant r)."""
    return spec(name).bounds(_capabilities(model).facts)


def create(name: str, model, keep_rate: float = 0.7, **params) -> Pruner:
    """Method ``name`` configured for ``model`` (parameters validated, defaults filled in; ``.plan`` holds
    its token counts). To run it, use :func:`apply`."""
    reason = unavailable_reason(name, model)
    if reason:
        raise PruningError(reason)
    return spec(name).impl(inspect_model(model), keep_rate=keep_rate, **params)


def plan(model, method: str, keep_rate: float = 0.7, **params) -> Plan:
    """The token counts of a configuration (without running it): ``plan.attn_tokens``, ``plan.mlp_tokens``."""
    info = inspect_model(model)
    return spec(method).impl(info, keep_rate=keep_rate, **params).plan


from .sweep import SweepPoint, SweepResult, match_budget, measure_throughput, object_patch_share, run_sweep  # noqa: E402

__all__ = [
    "ACTIONS",
    "DROPPED",
    "DROPPED_SIMILAR",
    "FUSED",
    "KEPT",
    "MERGED",
    "REGISTRY",
    "SUPPORTED",
    "LayerTrace",
    "ModelInfo",
    "Plan",
    "Pruner",
    "PruningError",
    "PruningSession",
    "SweepPoint",
    "SweepResult",
    "apply",
    "available",
    "block_macs",
    "capabilities",
    "create",
    "default_layers",
    "fixed_macs",
    "head_macs",
    "inspect_model",
    "keep_count",
    "match_budget",
    "measure_throughput",
    "object_patch_share",
    "param_bounds",
    "patch_embed_macs",
    "plan",
    "retention_weights",
    "run_sweep",
    "spec",
    "specs",
    "unavailable_reason",
    "unsupported_reason",
    "vit_flops",
    "wpr",
]
