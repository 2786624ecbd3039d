"""Batched model runs: one pass over a dataset gives logits, penultimate features and the head.

Every analysis reads :class:`ModelOutputs`, so a model is run over a dataset once and the
result is cached; detectors, metrics and plots then work on arrays only.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from core.outputs import ExtractError, ModelOutputs

#: runners for models that are not torch modules: (predicate, run(model, dataset, progress)) pairs,
#: registered by the module that defines the model type (core.models.tabular registers its own)
_RUNNERS: list[tuple[Callable[[Any], bool], Callable]] = []


def register_runner(accepts: Callable[[Any], bool], runner: Callable) -> None:
    """Let :func:`run` handle models for which ``accepts(model)`` is true with ``runner(model, dataset, progress=)``."""
    _RUNNERS.append((accepts, runner))


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
        if not _RUNNERS:
            import core.models.tabular  # noqa: F401  (registers the scikit-learn runner)
        for accepts, runner in _RUNNERS:
            if accepts(model):
                return runner(model, dataset, progress=progress)
        raise ExtractError(f"No runner for a model of type {type(model).__name__}: expected a torch module or a "
                           "tabular model from core.models.tabular.train_tabular.")
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


__all__ = ["ExtractError", "ModelOutputs", "features_and_logits", "preprocess", "register_runner", "run"]
