"""Post-hoc OOD detectors (one registry) and the metrics to compare them.

>>> from core import ood
>>> ood.available()[:3]
['msp', 'maxlogit', 'energy']
>>> det = ood.create("knn", k=50).fit(train_outputs)          # doctest: +SKIP
>>> s_id, s_ood = det.score(test_outputs), det.score(ood_outputs)  # doctest: +SKIP
>>> ood.metrics(s_id, s_ood)["auroc"]                            # doctest: +SKIP

Design
------
- Every detector follows scikit-learn's shape: parameters are constructor keywords (validated
  against its :class:`ParamSpec` list), ``fit(outputs)`` learns statistics from
  :class:`~core.extract.ModelOutputs` of the ID training split and returns the detector, and
  ``score(outputs)`` returns float64 scores where **higher means more in-distribution**.
  Detectors without statistics need no ``fit`` (calling it is harmless and only validates).
- Each detector declares in its :class:`DetectorSpec` what it ``needs`` from
  {"logits", "features", "head", "labels", "model", "inputs"}, its group (logit / feature /
  shaping / model / paper), its parameters and a description with the formula and the paper, so
  the UI builds controls and hides what does not apply (:func:`unavailable_reason`).
- Everything except ODIN works on cached arrays; GradNorm uses its closed form for a linear
  head. ODIN needs the torch model (``create("odin", model=m)``) and, at score time, the
  preprocessed input images: ``det.score(outputs, inputs=x)`` with ``x`` a tensor [N, 3, H, W] or
  an iterable of batches (``det.score_inputs(x)`` skips the outputs check).
- :mod:`core.ood.suite` runs many detectors over an ID set and several OOD sets
  (``run_suite``), with per-set metric tables and helpers for the page (``per_class``,
  ``flagged_counts``, ``extremes``).
- Errors are :class:`OODError` (a ``ValueError``) with a message meant for the user: missing
  features or head, NaN/inf, empty sets, a fit set with a single class for class-conditional
  detectors, feature dimensions or heads that differ between fit and score, scoring before fit.
"""
from __future__ import annotations

from core.outputs import ModelOutputs
from core.spec import Capabilities

from . import feature, logit, model_based, paper, shaping  # noqa: F401  (register the detectors)
from .base import REGISTRY, Detector, DetectorSpec, NotFittedError, OODError, ParamSpec, class_assignment, missing_reason
from .metrics import CONVENTIONS, metrics, roc_curve
from .shaping import shape_features


def available() -> list[str]:
    """Ids of every registered detector, in a stable display order."""
    return REGISTRY.available()


def spec(name: str) -> DetectorSpec:
    """The registry entry of ``name``: id, name, group, description, reference, needs, params, ..."""
    return REGISTRY.spec(name)


def specs() -> list[DetectorSpec]:
    return REGISTRY.specs()


def create(name: str, model=None, **params) -> Detector:
    """A new detector ``name`` with ``params`` (defaults from its spec). ``model`` is only used by
    detectors that need it (ODIN) and ignored by the others, so callers can pass it uniformly."""
    s = spec(name)
    if "model" not in s.needs:
        model = None
    return s.cls(model=model, **params)


def capabilities(outputs: ModelOutputs | None, has_model: bool = False, has_inputs: bool = True) -> Capabilities:
    """What a run offers the detectors: the fit outputs, a torch model, the input images; the facts
    bound parameters (``feature_dim``: ViM's principal space must leave a residual)."""
    facts = {"outputs": outputs, "has_model": has_model, "has_inputs": has_inputs}
    if outputs is not None and outputs.features is not None:
        facts["feature_dim"] = int(outputs.features.shape[1])
    return Capabilities(has=frozenset(REGISTRY.needs), facts=facts)


def param_bounds(name: str, outputs: ModelOutputs | None) -> dict[str, float]:
    """Upper bounds the data sets on detector ``name``'s parameters (e.g. ViM's ``dim`` < D)."""
    return spec(name).bounds(capabilities(outputs).facts)


def unavailable_reason(name: str, outputs: ModelOutputs | None, has_model: bool = False,
                       has_inputs: bool = True) -> str | None:
    """Why detector ``name`` cannot run on ``outputs`` (the workspace's fit/training outputs), or None.

    Checks the arrays it needs (features, head, labels), that class-conditional detectors see at
    least two classes, and for ODIN that a torch model (``has_model``) and the input images
    (``has_inputs``) are at hand.
    """
    return REGISTRY.unavailable_reason(name, capabilities(outputs, has_model, has_inputs))


def _unavailable(s: DetectorSpec, caps: Capabilities) -> str | None:
    """The registry's check: the detector-specific reasons behind :func:`unavailable_reason`."""
    outputs, has_model, has_inputs = caps.facts.get("outputs"), caps.facts.get("has_model"), caps.facts.get("has_inputs", True)
    if "model" in s.needs and not has_model:
        return (f"{s.name} perturbs the input images and re-runs the network, so it needs a loaded torch model; "
                "these outputs come without one (e.g. an uploaded .npz or a scikit-learn model).")
    if "inputs" in s.needs and not has_inputs:
        return f"{s.name} needs the input images; only precomputed outputs are available."
    if outputs is None:
        return None if s.needs <= {"model", "inputs"} else f"{s.name} needs model outputs; none were given."
    reason = missing_reason(s, outputs)
    if reason:
        return reason
    if "labels" in s.needs:
        labels = outputs.labels
        if labels is None or not ((labels >= 0) & (labels < outputs.num_classes)).any():
            return f"{s.name} fits on class labels, and the fit outputs have none (set a fixed temperature instead)."
    if s.class_conditional:
        y, source = class_assignment(outputs) if s.id != "klm" else (outputs.logits.argmax(1), "predictions")
        if len(set(y[y >= 0].tolist())) < 2:
            return f"{s.name} builds per-class statistics, but the fit set's {source} contain fewer than 2 classes."
    return None


def assumption_notes(name: str, outputs: ModelOutputs | None) -> list[str]:
    """What in ``outputs`` (typically the ID features) breaks an assumption detector ``name`` declares,
    as sentences for the user; empty when nothing does. The detector still runs: the point is to
    explain a poor result (e.g. ASH on a ViT's signed features), not to hide it."""
    s = spec(name)
    notes = []
    if "nonnegative-features" in s.assumes and outputs is not None and outputs.features is not None:
        feats = outputs.features
        share = float((feats < 0).mean()) if feats.size else 0.0
        if share > 0.01:
            notes.append(f"{s.name} was designed for non-negative (post-ReLU, CNN-like) features, but {share:.0%} of "
                         "these feature values are negative (e.g. a transformer's pre-logits), so its scores may rank "
                         "ID samples below OOD ones.")
    return notes


__all__ = [
    "CONVENTIONS",
    "Detector",
    "DetectorSpec",
    "NotFittedError",
    "OODError",
    "ParamSpec",
    "assumption_notes",
    "available",
    "capabilities",
    "create",
    "metrics",
    "param_bounds",
    "roc_curve",
    "shape_features",
    "spec",
    "specs",
    "unavailable_reason",
]
