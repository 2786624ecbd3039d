"""Batched model runs: one pass over a dataset gives logits, penultimate features and the head.

Every analysis reads :class:`ModelOutputs`, so a model is run over a dataset once and the
result is cached; detectors, metrics and plots then work on arrays only.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn


class ExtractError(ValueError):
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


def preprocess(images: np.ndarray, card: dict) -> torch.Tensor:
    """uint8 [N,H,W,3] -> normalised float tensor [N,3,H,W] at the model's input size."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    size = card.get("input_size", [3, x.shape[2], x.shape[3]])[1:]
    if tuple(x.shape[2:]) != tuple(size):
        x = torch.nn.functional.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(card.get("mean", (0.5, 0.5, 0.5)), dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(card.get("std", (0.25, 0.25, 0.25)), dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std


def features_and_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features (timm ``forward_head(pre_logits=True)``) and logits of a timm model."""
    if hasattr(model, "forward_features") and hasattr(model, "forward_head"):
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
        head = model.get_classifier() if hasattr(model, "get_classifier") else None
        logits = head(pre) if head is not None else model.forward_head(feats)
        return pre.flatten(1), logits
    logits = model(x)
    return None, logits


@torch.no_grad()
def run(model, dataset, batch_size: int = 64, progress: Callable[[float, str], None] | None = None) -> ModelOutputs:
    """Run ``model`` over ``dataset`` in batches and collect :class:`ModelOutputs`.

    ``progress(fraction, message)`` is called after every batch. Torch image models and
    fitted scikit-learn tabular models are supported. A dataset that already carries
    outputs (an uploaded .npz) is returned as is.
    """
    if getattr(dataset, "outputs", None) is not None:
        return dataset.outputs
    if batch_size < 1:
        raise ExtractError(f"batch_size must be at least 1, got {batch_size}.")
    if not isinstance(model, nn.Module):
        from core.models.tabular import run_tabular

        return run_tabular(model, dataset, progress=progress)
    if dataset.images is None:
        raise ExtractError(f"The model '{getattr(model, 'card', {}).get('name', 'model')}' needs images, "
                           f"but dataset '{dataset.name}' is a {dataset.kind}.")
    card = getattr(model, "card", {})
    model.eval()
    n = len(dataset)
    feats, logits = [], []
    for start in range(0, n, batch_size):
        x = preprocess(dataset.images[start:start + batch_size], card)
        f, lg = features_and_logits(model, x)
        logits.append(lg.float().numpy())
        if f is not None:
            feats.append(f.float().numpy())
        if progress is not None:
            done = min(n, start + batch_size)
            progress(done / n, f"{done}/{n} images")
    num_classes = model.get_classifier().out_features if hasattr(model, "get_classifier") else None
    logits_arr = np.concatenate(logits) if logits else np.zeros((0, num_classes or 0), np.float32)
    feats_arr = np.concatenate(feats) if feats else None
    head_w = head_b = None
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if isinstance(head, nn.Linear) and feats_arr is not None:
        head_w = head.weight.detach().float().numpy()
        head_b = (head.bias.detach().float().numpy() if head.bias is not None
                  else np.zeros(head.out_features, np.float32))
    return ModelOutputs(
        logits=logits_arr, features=feats_arr, labels=dataset.labels, preds=logits_arr.argmax(1) if n else np.zeros(0, np.int64),
        head_weight=head_w, head_bias=head_b, class_names=list(card.get("class_names", [])),
        meta={"model": card.get("name", type(model).__name__), "data": dataset.name},
    )
