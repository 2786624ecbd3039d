"""Attribution: which parts of an input a model's decision rests on, and how far to trust the answer.

>>> from core import attribution
>>> attribution.available()[:3]
['saliency', 'grad-x-input', 'integrated-gradients']
>>> a = attribution.attribute(model, x, target, "integrated-gradients", steps=50)   # doctest: +SKIP
>>> a.shape == x.shape                                                             # doctest: +SKIP
True
>>> attribution.metrics.deletion_auc(model, x, a, target)                          # doctest: +SKIP

Design
------
- One registry (:data:`REGISTRY`, a :class:`core.spec.Registry`) holds every method with its
  parameters, what it needs ("gradients", "images", "tables", "spatial-layer", "attention"), the
  input kinds it explains, whether it is slow and why, and ``cost``: its forward and backward
  passes per sample (:func:`estimate_passes`), so a page can ask before a long run.
- :func:`attribute` returns attributions shaped exactly like ``x``: images [N, C, H, W] keep
  their channels (float32; any reduction for display happens in :mod:`core.viz.attribution`),
  table rows [N, F] (an array or a DataFrame) give a float64 array [N, F]. Torch models explain
  the target's logit; models with ``predict_proba`` (scikit-learn, ``TabularModel``) its
  probability; RISE and ReAGent use the softmax probability, as their papers do.
- Every method runs the model in memory-bounded chunks (``batch_size`` overrides the automatic
  chunk), in eval mode (the model's own mode is restored after), and never changes the model.
- :mod:`core.attribution.metrics` scores maps (faithfulness, shape, ground truth, sanity) and
  :func:`run_attribution` runs a suite of methods with metrics, progress and a cache into a typed
  :class:`AttributionResult`.
- Errors in the input are :class:`AttributionError` (a ``UserError``) with a message for the user.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from core.spec import Capabilities

from . import cam, gradient, metrics, perturbation, reagent, shapley  # noqa: F401  (register the methods)
from .base import (
    EXACT_SHAPLEY_MAX_FEATURES,
    REGISTRY,
    AttributionError,
    AttributionSpec,
    PassEstimate,
    Subject,
    card_of,
    cnn_stages,
    has_proba,
    has_standard_attention,
    input_facts,
    is_torch,
    vit_parts,
)


def available(kind: str | None = None) -> list[str]:
    """Ids of every method in display order; with ``kind`` ("image" or "table") only those that explain it."""
    if kind is None:
        return REGISTRY.available()
    if kind not in ("image", "table"):
        raise AttributionError(f"kind must be 'image' or 'table', got {kind!r}.")
    return [k for k in REGISTRY.available() if kind in REGISTRY[k].inputs]


def spec(name: str) -> AttributionSpec:
    """The registry entry of ``name``: id, name, group, description, reference, needs, params, cost, ..."""
    return REGISTRY.spec(name)


def specs() -> list[AttributionSpec]:
    return REGISTRY.specs()


def _model_facts(model) -> dict[str, Any]:
    """Facts known from the model alone (its card's input size, a table model's features)."""
    if is_torch(model):
        size = card_of(model).get("input_size")
        if isinstance(size, (list, tuple)) and len(size) == 3:
            c, h, w = (int(v) for v in size)
            return {"input_kind": "image", "channels": c, "height": h, "width": w, "image_side": min(h, w),
                    "n_pixels": h * w}
        return {}
    if has_proba(model):
        names = getattr(model, "feature_names", None)
        return {"input_kind": "table", **({"n_features": len(names)} if names else {})}
    return {}


def capabilities(model, x=None) -> Capabilities:
    """What ``model`` (and, when given, the input ``x``) offers the methods, with a reason for every
    need it does not meet; the facts bound parameters (image side, number of features)."""
    facts = _model_facts(model)
    if x is not None:
        facts.update(input_facts(model, x))
    has: set[str] = set()
    why: dict[str, str] = {}
    name = card_of(model).get("name") or type(model).__name__
    torch_model = is_torch(model)
    if torch_model:
        has.add("gradients")
    else:
        why["gradients"] = f"'{name}' is not a differentiable torch model (a scikit-learn model has no input gradients)"
    kind = facts.get("input_kind")
    if kind in (None, "image") and torch_model:
        has.add("images")
    else:
        why["images"] = "the input is a table"
    if kind in (None, "table"):
        has.add("tables")
    else:
        why["tables"] = "the input is an image"
    if torch_model and (vit_parts(model) is not None or cnn_stages(model)):
        has.add("spatial-layer")
    else:
        why["spatial-layer"] = (f"'{name}' has no convolutional stages or patch tokens" if torch_model
                                else "a table model has no spatial feature map")
    if torch_model and has_standard_attention(model):
        has.add("attention")
    elif torch_model and vit_parts(model) is None:
        why["attention"] = f"'{name}' is a CNN without attention"
    elif torch_model:
        why["attention"] = f"the blocks of '{name}' do not use timm's standard Attention module"
    else:
        why["attention"] = "a table model has no attention"
    return Capabilities(has=frozenset(has), why_not=why, facts=facts)


def unavailable_reason(name: str, model, x=None) -> str | None:
    """Why method ``name`` cannot explain ``model`` (on ``x``), as a sentence; None when it can."""
    return REGISTRY.unavailable_reason(name, capabilities(model, x))


def usable(model, x=None) -> dict[str, str | None]:
    """Every method -> the reason it cannot run on ``model`` (None when it can)."""
    return REGISTRY.usable(capabilities(model, x))


def param_bounds(name: str, model, x=None) -> dict[str, float]:
    """Upper bounds the input sets on method ``name``'s parameters (e.g. a patch no larger than the image)."""
    return spec(name).bounds(capabilities(model, x).facts)


def estimate_passes(model, x, method: str, **params) -> PassEstimate:
    """Forward and backward passes ``attribute(model, x, target, method, **params)`` will run, for
    all samples of ``x`` (the same count whatever the target). ``x`` may be an array or just its
    shape (a tuple)."""
    s = spec(method)
    facts = input_facts(model, np.empty(x, np.float32) if isinstance(x, tuple) else x)
    values = s.validate_params(params, AttributionError, facts)
    per_sample = s.cost(facts, values) if s.cost is not None else PassEstimate(forward=1)
    return per_sample.scaled(facts["n"])


@contextmanager
def evaluating(model):
    """Eval mode for the duration of a run; every module's own training flag is restored after."""
    if not isinstance(model, nn.Module):
        yield
        return
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for m, was in flags.items():
            m.training = was


@dataclass
class Explanation:
    """One method's attributions with what the run found: ``values`` (the shape of ``x``),
    ``targets`` [N], the validated ``params``, method-specific ``info`` (e.g. IG's
    ``completeness_gap``), wall ``seconds`` and the ``passes`` estimate."""

    method: str
    values: np.ndarray
    targets: np.ndarray
    params: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    passes: PassEstimate | None = None


def explain(model, x, target=None, method: str = "integrated-gradients", *, background=None, batch_size: int | None = None,
            progress=None, **params) -> Explanation:
    """Like :func:`attribute`, returning an :class:`Explanation` with the run's facts."""
    s = spec(method)
    caps = capabilities(model, x)
    reason = REGISTRY.unavailable_reason(method, caps)
    if reason:
        raise AttributionError(reason)
    values = s.validate_params(params, AttributionError, caps.facts)
    t0 = time.perf_counter()
    with evaluating(model):
        subject = Subject.build(model, x, target, background=background, batch_size=batch_size, progress=progress)
        result, info = s.impl(subject, values)
    result = np.asarray(result, np.float32 if subject.kind == "image" else np.float64)
    if result.shape != tuple(np.shape(x)):
        raise RuntimeError(f"{s.name} returned shape {result.shape} for an input of shape {tuple(np.shape(x))}.")
    per_sample = s.cost(caps.facts, values) if s.cost is not None else PassEstimate(forward=1)
    return Explanation(method, result, subject.targets, values, info, time.perf_counter() - t0,
                       per_sample.scaled(subject.n))


def attribute(model, x, target=None, method: str = "integrated-gradients", *, background=None,
              batch_size: int | None = None, progress=None, **params) -> np.ndarray:
    """Attributions of ``model``'s score for class ``target`` on ``x`` by ``method``, shaped exactly like ``x``.

    ``x``: images in the model's input space [N, C, H, W] (``core.extract.preprocess``), or table
    rows [N, F] (array or DataFrame; a DataFrame's columns are put in the model's feature order).
    ``target``: a class index, one per sample, or None for each sample's predicted class.
    ``params``: the method's parameters (``spec(method).params``; defaults fill the rest).
    ``background``: reference rows for table methods (e.g. the training rows); default: ``x``.
    ``batch_size``: rows per model call (default: chosen to bound memory).
    ``progress(fraction)``: called as the run advances.
    Returns float32 for images and float64 for tables; see the package docstring for the score
    each kind of model attributes.
    """
    return explain(model, x, target, method, background=background, batch_size=batch_size, progress=progress,
                   **params).values


from .suite import AttributionResult, estimate_run, run_attribution  # noqa: E402  (the suite uses the API above)

__all__ = [
    "EXACT_SHAPLEY_MAX_FEATURES",
    "REGISTRY",
    "AttributionError",
    "AttributionResult",
    "AttributionSpec",
    "Explanation",
    "PassEstimate",
    "attribute",
    "available",
    "capabilities",
    "estimate_passes",
    "estimate_run",
    "explain",
    "metrics",
    "param_bounds",
    "run_attribution",
    "spec",
    "specs",
    "unavailable_reason",
    "usable",
]
