"""Detector base class, the detector spec and registry, and input validation.

Every detector is a class registered with :func:`register` in :data:`REGISTRY` (a
:class:`core.spec.Registry`, shared machinery of every analysis module); its docstring is the
description the UI shows (what it computes, the formula, the paper), and its
:class:`~core.spec.ParamSpec` tuple is what the UI turns into controls.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core.errors import UserError
from core.outputs import ModelOutputs
from core.spec import Capabilities, MethodSpec, ParamSpec, Registry  # noqa: F401  (ParamSpec: re-exported)

#: Everything a detector can need. "labels": class labels on the *fit* set. "model": a torch
#: model (passed to ``create(..., model=)``). "inputs": the preprocessed input images at score time.
NEEDS = ("logits", "features", "head", "labels", "model", "inputs")
GROUPS = ("logit", "feature", "shaping", "model", "paper")
ASSUMPTIONS = ("nonnegative-features",)


class OODError(UserError):
    """A detector or metric was given something it cannot use; the message is meant for the user."""


class NotFittedError(OODError):
    """``score`` was called on a detector that must be fitted first."""


@dataclass(frozen=True)
class DetectorSpec(MethodSpec):
    """What the UI needs to know about a detector without instantiating it (a :class:`MethodSpec`
    with the facts of fitting)."""

    requires_fit: bool = False  # fit() learns statistics from the (ID training) outputs
    class_conditional: bool = False  # per-class statistics: the fit set needs >= 2 classes
    #: "fit": fitted on the fit set (typically the ID training split); "validation": calibrated on held-out
    #: ID data when the caller has some (run_suite's ``validation``), as TempScale's T is (Guo et al.)
    fit_on: str = "fit"

    @property
    def cls(self) -> type:
        return self.impl


def _check_detector(spec: DetectorSpec, caps: Capabilities) -> str | None:
    from . import _unavailable  # the detector-specific reasons (needs the outputs themselves)

    return _unavailable(spec, caps)


#: every detector, in the registry shared by all analysis modules (core.spec)
REGISTRY: Registry[DetectorSpec] = Registry(
    "OOD", noun="detector", error=OODError, groups=GROUPS, needs=NEEDS, assumptions=ASSUMPTIONS,
    order=("msp", "maxlogit", "energy", "entropy", "gen", "tempscale", "klm", "mahalanobis", "rmds", "knn", "vim",
           "residual", "she", "nnguide", "fdbd", "react", "ash-p", "ash-b", "ash-s", "scale", "dice", "odin",
           "gradnorm", "wdiscood", "conjnorm"),
    check=_check_detector, spec_type=DetectorSpec)


def register(id: str, name: str, group: str, needs, reference: str, params=(), requires_fit: bool = False,
             class_conditional: bool = False, fit_on: str = "fit", assumes: tuple[str, ...] = (),
             slow: str | None = None):
    """Class decorator: register a :class:`Detector` subclass under ``id``; its docstring is the description."""
    if fit_on not in ("fit", "validation"):
        raise ValueError(f"fit_on must be 'fit' or 'validation', got {fit_on!r}")
    return REGISTRY.register(id, name, group, needs, reference, params=params, requires_fit=requires_fit,
                             class_conditional=class_conditional, fit_on=fit_on, assumes=tuple(assumes), slow=slow)


# ---------------------------------------------------------------------------- validation helpers
def _count_bad_rows(x: np.ndarray) -> int:
    return int((~np.isfinite(x)).reshape(len(x), -1).any(1).sum())


def _all_finite(x: np.ndarray) -> bool:
    """One threaded, vectorised min/max pass (torch.aminmax propagates NaN; ±inf shows in the extremes):
    about half the time of np.isfinite(x).all(), which also writes a boolean copy."""
    x = np.asarray(x)
    if x.size < 65536 or x.dtype not in (np.float32, np.float64):
        return bool(np.isfinite(x).all())
    with torch.no_grad():
        lo, hi = torch.aminmax(torch.from_numpy(np.ascontiguousarray(x)))
    return bool(np.isfinite(lo.item()) and np.isfinite(hi.item()))


def check_finite(name: str, x: np.ndarray, detector: str) -> None:
    if not _all_finite(x):
        raise OODError(f"{detector}: {name} contain NaN or inf in {_count_bad_rows(x)} of {len(x)} samples; "
                       "detectors need finite values.")


def describe_source(outputs: ModelOutputs) -> str:
    model = str(outputs.meta.get("model", "")) if outputs.meta else ""
    if model == "uploaded outputs":
        return "the uploaded .npz"
    return f"the outputs of '{model}'" if model else "these model outputs"


def missing_reason(spec: DetectorSpec, outputs: ModelOutputs) -> str | None:
    """Why ``outputs`` lack an array the detector needs (None when nothing is missing)."""
    src = describe_source(outputs)
    npz = src == "the uploaded .npz"
    has = "has" if npz else "have"
    if len(outputs) == 0:
        return f"{spec.name} needs at least one sample; {src} {has} none."
    if "features" in spec.needs and outputs.features is None:
        hint = " (save a 'features' array [N, D] with it)" if npz else ""
        return f"{spec.name} needs penultimate features; {src} {has} none{hint}."
    if "head" in spec.needs and outputs.head_weight is None:
        hint = " (save 'head_weight' [C, D] and 'head_bias' [C] with it)" if npz else ""
        return f"{spec.name} needs the weights of a linear classification head; {src} {has} none{hint}."
    if "logits" in spec.needs and outputs.num_classes < 2:
        return f"{spec.name} compares classes and needs at least 2 logits; {src} {has} {outputs.num_classes}."
    return None


def class_assignment(outputs: ModelOutputs) -> tuple[np.ndarray, str]:
    """Class of every fit sample for class-conditional statistics: the labels when present, else
    the predictions. Labels outside 0..C-1 (e.g. -1 for "no class") are returned as -1."""
    c = outputs.num_classes
    if outputs.labels is not None:
        y = outputs.labels.astype(np.int64)
        source = "labels"
    else:
        y = outputs.logits.argmax(1).astype(np.int64)
        source = "predictions"
    y = np.where((y >= 0) & (y < c), y, -1)
    return y, source


_DIM_WORDS = {"classes": lambda n: f"{n} classes (logits)", "feature dimension": lambda n: f"{n}-dimensional features"}


# ---------------------------------------------------------------------------- detector base
class Detector:
    """Base class: ``fit(train_outputs)`` learns statistics, ``score(outputs)`` returns float64
    scores, higher = more in-distribution. Parameters are keyword arguments of the constructor,
    validated against the spec; fitted facts worth showing (e.g. the effective k, a fitted
    temperature) go in ``self.info``."""

    spec: DetectorSpec  # set by @register
    _extra_kwargs: tuple[str, ...] = ()  # non-UI constructor arguments (besides model)

    def __init__(self, model=None, **params):
        spec = self.spec
        extra = {k: params.pop(k) for k in list(params) if k in self._extra_kwargs}
        self.params: dict[str, Any] = spec.validate_params(params, OODError)
        self.model = model
        self.extra = extra
        self.info: dict[str, Any] = {}
        self.fitted = False
        self._fit_dims: dict[str, int] = {}
        self._fit_head: tuple[np.ndarray, np.ndarray] | None = None
        self._validate_params()

    def _validate_params(self) -> None:  # cross-parameter checks in subclasses
        pass

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    # -- validation shared by fit and score
    def _check(self, outputs: ModelOutputs, stage: str) -> None:
        spec = self.spec
        if not isinstance(outputs, ModelOutputs):
            raise OODError(f"{spec.name}: {stage} expects ModelOutputs, got {type(outputs).__name__}.")
        reason = missing_reason(spec, outputs)
        if reason:
            raise OODError(reason)
        if "logits" in spec.needs or "head" in spec.needs:
            check_finite("logits", outputs.logits, spec.name)
        if "features" in spec.needs:
            check_finite("features", outputs.features, spec.name)
        if "head" in spec.needs:
            check_finite("head weights", outputs.head_weight, spec.name)
            check_finite("head bias", outputs.head_bias[None, :], spec.name)

    def _dims(self, outputs: ModelOutputs) -> dict[str, int]:
        dims = {"classes": outputs.num_classes}
        if "features" in self.spec.needs or "head" in self.spec.needs:
            dims["feature dimension"] = outputs.features.shape[1]
        return dims

    def fit(self, outputs: ModelOutputs) -> Detector:
        """Learn the detector's statistics from ``outputs`` (typically the ID training split)."""
        self._check(outputs, "fit")
        if self.spec.class_conditional:
            y, source = self._fit_classes(outputs)
            present = np.flatnonzero(np.bincount(y[y >= 0])) if (y >= 0).any() else np.zeros(0, np.int64)
            if len(present) < 2:
                names = outputs.class_names or [str(k) for k in range(outputs.num_classes)]
                got = "no class" if len(present) == 0 else f"only class {names[present[0]]!r}"
                raise OODError(f"{self.spec.name} builds per-class statistics and needs fit samples from at least "
                               f"2 classes; the fit set's {source} contain {got}.")
        if "labels" in self.spec.needs and self._needs_labels():
            if outputs.labels is None or not ((outputs.labels >= 0) & (outputs.labels < outputs.num_classes)).any():
                raise OODError(f"{self.spec.name} needs class labels on the fit set; none (or only -1) were found "
                               f"in {describe_source(outputs)}.")
        self._fit_dims = self._dims(outputs)
        if "head" in self.spec.needs:
            self._fit_head = (outputs.head_weight, outputs.head_bias)
        self.info = {}
        self._fit(outputs)
        self.fitted = True
        return self

    def _needs_labels(self) -> bool:
        return True

    def _fit_classes(self, outputs: ModelOutputs) -> tuple[np.ndarray, str]:
        """Class of each fit sample for per-class statistics (-1 = none); override to change."""
        return class_assignment(outputs)

    def _fit(self, outputs: ModelOutputs) -> None:
        pass

    def score(self, outputs: ModelOutputs) -> np.ndarray:
        """Scores of ``outputs`` as float64 [N]; higher means more in-distribution.

        Outputs without a head (e.g. an uploaded .npz of logits and features) are scored with the
        head the detector was fitted with; their class count and feature dimension must match it."""
        if (self._fit_head is not None and isinstance(outputs, ModelOutputs) and outputs.head_weight is None
                and outputs.features is not None and len(outputs)):
            self._check_dims(outputs)
            outputs = dataclasses.replace(outputs, head_weight=self._fit_head[0], head_bias=self._fit_head[1])
        self._check(outputs, "score")
        if self.spec.requires_fit and not self.fitted:
            raise NotFittedError(f"{self.spec.name} must be fitted first: call .fit(train_outputs) before .score().")
        if self.fitted:
            self._check_dims(outputs)
            if self._fit_head is not None:
                w, b = self._fit_head
                if not (np.array_equal(w, outputs.head_weight) and np.array_equal(b, outputs.head_bias)):
                    raise OODError(f"{self.spec.name} was fitted with a different classification head than the "
                                   "outputs to score have; refit it on outputs of this model.")
        scores = np.asarray(self._score(outputs), dtype=np.float64).reshape(len(outputs))
        return scores

    def _check_dims(self, outputs: ModelOutputs) -> None:
        """The class count and feature dimension must be those of the fit outputs (features first)."""
        dims = self._dims(outputs)
        for key in sorted(self._fit_dims, key=lambda k: k != "feature dimension"):
            n_fit = self._fit_dims[key]
            if key in dims and dims[key] != n_fit:
                raise OODError(f"{self.spec.name} was fitted on outputs with {_DIM_WORDS[key](n_fit)}, but the "
                               f"outputs to score have {_DIM_WORDS[key](dims[key])}; were they produced by a "
                               "different model?")

    def _score(self, outputs: ModelOutputs) -> np.ndarray:
        raise NotImplementedError
