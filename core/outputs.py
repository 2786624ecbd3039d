"""``ModelOutputs``: what one model produced on one dataset, the object every analysis reads.

A leaf module (it imports nothing from the rest of the core), so extraction, the model runners
and the analyses can all import it without import cycles. ``core.extract`` re-exports it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import UserError


class ExtractError(UserError):
    """Raised when a model cannot be run on a dataset; the message is meant for the user."""


@dataclass
class ModelOutputs:
    """What one model produced on one dataset. Arrays are float32 numpy (labels/preds int64).

    ``logits [N,C]``, ``features [N,D]`` (penultimate, pre-head), ``labels [N]`` or None,
    ``preds [N]``, ``head_weight [C,D]`` and ``head_bias [C]`` (None when the model has no
    linear head, e.g. a random forest). ``class_names`` names the C logits.
    """

    logits: np.ndarray
    features: np.ndarray | None
    labels: np.ndarray | None
    preds: np.ndarray
    head_weight: np.ndarray | None = None
    head_bias: np.ndarray | None = None
    class_names: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.logits = np.asarray(self.logits, np.float32)
        if self.logits.ndim != 2:
            raise ExtractError(f"logits must be a 2-D array [N, C], got shape {self.logits.shape}.")
        n = len(self.logits)
        if self.features is not None:
            self.features = np.asarray(self.features, np.float32)
            if self.features.ndim != 2 or len(self.features) != n:
                raise ExtractError(f"features must be [N, D] with N = {n} (the number of logits), got {self.features.shape}.")
        if self.labels is not None:
            self.labels = np.asarray(self.labels).astype(np.int64)
            if self.labels.shape != (n,):
                raise ExtractError(f"labels must be [N] with N = {n}, got {self.labels.shape}.")
        self.preds = np.asarray(self.preds).astype(np.int64)
        if self.head_weight is not None:
            self.head_weight = np.asarray(self.head_weight, np.float32)
            self.head_bias = (np.zeros(len(self.head_weight), np.float32) if self.head_bias is None
                              else np.asarray(self.head_bias, np.float32))
            if self.features is not None and self.head_weight.shape != (self.logits.shape[1], self.features.shape[1]):
                raise ExtractError(
                    f"head_weight must be [C, D] = [{self.logits.shape[1]}, {self.features.shape[1]}], got {self.head_weight.shape}.")

    def __len__(self) -> int:
        return len(self.logits)

    @property
    def num_classes(self) -> int:
        return self.logits.shape[1]

    @property
    def has_features(self) -> bool:
        return self.features is not None

    @property
    def has_head(self) -> bool:
        return self.head_weight is not None

    def accuracy(self) -> float | None:
        """Top-1 accuracy over samples with a label in range (labels of -1 are OOD and skipped)."""
        if self.labels is None:
            return None
        ok = (self.labels >= 0) & (self.labels < self.num_classes)
        if not ok.any():
            return None
        return float((self.preds[ok] == self.labels[ok]).mean())

    def subset(self, index) -> ModelOutputs:
        index = np.asarray(index)
        return ModelOutputs(
            logits=self.logits[index], features=None if self.features is None else self.features[index],
            labels=None if self.labels is None else self.labels[index], preds=self.preds[index],
            head_weight=self.head_weight, head_bias=self.head_bias, class_names=list(self.class_names),
            meta=dict(self.meta),
        )

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (what a byte-bounded cache charges for this object)."""
        arrays = (self.logits, self.features, self.labels, self.preds, self.head_weight, self.head_bias)
        return int(sum(a.nbytes for a in arrays if a is not None))
