"""Workflows a page (or a notebook) calls: explanations from stored model outputs, never rerunning the model.

- :func:`shapes_case` draws a Shapes source and a shifted target (a preset of
  :data:`core.data.shapes.SHIFT_PRESETS`) and runs the model once on each (cached);
- :func:`explain_shapes_shift` explains the change between two Shapes datasets with their factor
  table as the variables and the world's recorded graph, so the shifted mechanism is known;
- :func:`explain_outputs_shift` explains the change between any two sets of model outputs
  without metadata: the variables are the label and the model's features (their leading
  principal components), and the change splits into label shift, P(label), and the change in
  P(features | label) (or, with ``direction="features->label"``, covariate and concept shift).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import softmax

from core.data.dataset import Dataset
from core.outputs import ModelOutputs

from .base import ShiftError, ShiftSettings
from .explain import ShiftExplanation, explain_from_probabilities
from .graph import label_features_graph, shapes_graph

Progress = Callable[[float, str], None]
LABEL = "label"


def _probabilities(outputs: ModelOutputs) -> np.ndarray:
    return softmax(outputs.logits.astype(np.float64), axis=1)


def _sub_progress(progress: Progress | None, start: float, stop: float) -> Progress | None:
    if progress is None:
        return None
    return lambda f, msg: progress(start + (stop - start) * f, msg)


def shapes_variables(dataset: Dataset, mechanisms: Sequence[str] | None = None) -> pd.DataFrame:
    """The factor columns of ``mechanisms`` (default: all) of a Shapes dataset, one row per image."""
    from core.data.shapes import MECHANISM_COLUMNS

    if dataset.factors is None:
        raise ShiftError(f"Dataset '{dataset.name}' has no factor table; Shapes explanations need the generative "
                         "factors (use explain_outputs_shift for data without metadata).")
    graph, groups = shapes_graph(mechanisms)
    cols = [c for m in graph for c in MECHANISM_COLUMNS[m]]
    missing = [c for c in cols if c not in dataset.factors.columns]
    if missing:
        raise ShiftError(f"Dataset '{dataset.name}' lacks the factor column(s) {', '.join(missing)}.")
    return dataset.factors[cols].reset_index(drop=True)


def _check_pair(outputs: ModelOutputs, dataset: Dataset, which: str) -> None:
    if not isinstance(outputs, ModelOutputs):
        raise ShiftError(f"The {which} outputs must be ModelOutputs (core.extract.run), got {type(outputs).__name__}.")
    if len(outputs) != len(dataset):
        raise ShiftError(f"The {which} outputs hold {len(outputs)} rows but the {which} dataset {len(dataset)}; they "
                         "must come from running the model on that dataset.")
    if outputs.labels is not None and not np.array_equal(outputs.labels, dataset.labels):
        raise ShiftError(f"The {which} outputs' labels differ from the {which} dataset's; were they computed on "
                         "another dataset (or another seed)?")


def explain_shapes_shift(outputs_source: ModelOutputs, outputs_target: ModelOutputs, dataset_source: Dataset,
                         dataset_target: Dataset, *, metric: str = "log_loss", mechanisms: Sequence[str] | None = None,
                         graph: Mapping[str, Sequence[str]] | None = None,
                         groups: Mapping[str, Sequence[str]] | None = None, n_boot: int = 0, seed: int = 0,
                         settings: ShiftSettings | Mapping[str, Any] | None = None, progress: Progress | None = None,
                         cache=None, **options) -> ShiftExplanation:
    """Explain the change in ``metric`` of one model between two Shapes datasets from its stored outputs.

    The variables are the datasets' factor tables; the graph is the Shapes world's
    (``MECHANISM_PARENTS``, nodes = mechanisms standing for their factor columns) unless ``graph``
    (and ``groups``) say otherwise; ``mechanisms`` keeps a subset of the players. The mechanisms the
    two datasets' presets changed (the ground truth) are ``result.changed_mechanisms``.
    Other arguments as :func:`core.shift.explain_from_probabilities`.
    """
    _check_pair(outputs_source, dataset_source, "source")
    _check_pair(outputs_target, dataset_target, "target")
    if outputs_source.num_classes != outputs_target.num_classes:
        raise ShiftError(f"The source outputs have {outputs_source.num_classes} classes, the target's "
                         f"{outputs_target.num_classes}; use the same model on both.")
    default_graph, default_groups = shapes_graph(mechanisms)
    if graph is None:
        graph, groups = default_graph, default_groups
    vs, vt = shapes_variables(dataset_source), shapes_variables(dataset_target)
    vs[LABEL], vt[LABEL] = dataset_source.labels, dataset_target.labels
    model = str(outputs_source.meta.get("model", "")) if outputs_source.meta else ""
    shift_s, shift_t = dataset_source.params.get("shift") or "none", dataset_target.params.get("shift") or "none"
    provenance = {"model": model, "data": f"{dataset_source.name} ({shift_s}) → {dataset_target.name} ({shift_t})",
                  "source": f"{dataset_source.name}:{dataset_source.fingerprint()}",
                  "target": f"{dataset_target.name}:{dataset_target.fingerprint()}"}
    res = explain_from_probabilities(vs, vt, _probabilities(outputs_source), _probabilities(outputs_target),
                                     label=LABEL, graph=graph, groups=groups, metric=metric, seed=seed,
                                     categorical=["bg_type", "marker"], settings=settings, n_boot=n_boot,
                                     progress=progress, cache=cache, provenance=provenance, **options)
    changed = set(dataset_target.changed_mechanisms) ^ set(dataset_source.changed_mechanisms)
    res.changed_mechanisms = [m for m in res.nodes if m in changed]
    res.variables = "the Shapes factor table (ground truth known)"
    return res


def outputs_variables(outputs_source: ModelOutputs, outputs_target: ModelOutputs, n_components: int = 8,
                      seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Label and the leading principal components of the features (or of the log-probabilities when the
    outputs have no features) of both datasets, PCA fitted on the two pooled; and what was used."""
    from sklearn.decomposition import PCA

    for name, o in (("source", outputs_source), ("target", outputs_target)):
        if not isinstance(o, ModelOutputs):
            raise ShiftError(f"The {name} must be ModelOutputs, got {type(o).__name__}.")
        if o.labels is None:
            raise ShiftError(f"The {name} outputs carry no labels; explaining a performance change needs the labels "
                             "of both datasets.")
    use_features = outputs_source.features is not None and outputs_target.features is not None
    if use_features:
        if outputs_source.features.shape[1] != outputs_target.features.shape[1]:
            raise ShiftError("The source and target features have different dimensions "
                             f"({outputs_source.features.shape[1]} and {outputs_target.features.shape[1]}).")
        xs, xt, what = outputs_source.features, outputs_target.features, "features"
    else:
        xs = np.log(np.maximum(_probabilities(outputs_source), 1e-12))
        xt = np.log(np.maximum(_probabilities(outputs_target), 1e-12))
        what = "log-probabilities"
    pooled = np.vstack([xs, xt]).astype(np.float64)
    k = int(min(n_components, pooled.shape[1], len(pooled) - 1))
    pca = PCA(n_components=k, random_state=seed).fit(pooled)
    names = [f"pc{i + 1}" for i in range(k)]
    vs = pd.DataFrame(pca.transform(xs.astype(np.float64)), columns=names)
    vt = pd.DataFrame(pca.transform(xt.astype(np.float64)), columns=names)
    vs.insert(0, LABEL, outputs_source.labels)
    vt.insert(0, LABEL, outputs_target.labels)
    return vs, vt, f"{k} principal components of the {what}"


def explain_outputs_shift(outputs_source: ModelOutputs, outputs_target: ModelOutputs, *, metric: str = "log_loss",
                          direction: str = "label->features", n_components: int = 8, n_boot: int = 0, seed: int = 0,
                          settings: ShiftSettings | Mapping[str, Any] | None = None, progress: Progress | None = None,
                          cache=None, provenance: Mapping[str, Any] | None = None, **options) -> ShiftExplanation:
    """Explain the change in ``metric`` between two sets of model outputs that come without metadata.

    The variables are the label and the first ``n_components`` principal components of the
    penultimate features (of the log-probabilities when there are no features), PCA fitted on both
    sets pooled. ``direction="label->features"``: players P(label) and P(features | label);
    ``"features->label"``: P(features) and P(label | features). Labels of -1 (no class) are dropped.
    """
    keep_s = outputs_source.labels >= 0 if outputs_source.labels is not None else None
    keep_t = outputs_target.labels >= 0 if outputs_target.labels is not None else None
    if keep_s is not None and not keep_s.all():
        outputs_source = outputs_source.subset(np.flatnonzero(keep_s))
    if keep_t is not None and not keep_t.all():
        outputs_target = outputs_target.subset(np.flatnonzero(keep_t))
    vs, vt, what = outputs_variables(outputs_source, outputs_target, n_components, seed)
    graph, groups = label_features_graph(LABEL, [c for c in vs.columns if c != LABEL], direction)
    prov = {"model": str(outputs_source.meta.get("model", "")) if outputs_source.meta else "", **dict(provenance or {})}
    res = explain_from_probabilities(vs, vt, _probabilities(outputs_source), _probabilities(outputs_target),
                                     label=LABEL, graph=graph, groups=groups, metric=metric, seed=seed,
                                     settings=settings, n_boot=n_boot, progress=progress, cache=cache,
                                     provenance=prov, **options)
    res.variables = what
    return res


@dataclass
class ShapesShiftCase:
    """A Shapes source, a shifted target and one model's outputs on each (computed once)."""

    preset: str
    dataset_source: Dataset
    dataset_target: Dataset
    outputs_source: ModelOutputs
    outputs_target: ModelOutputs
    model: str

    @property
    def changed_mechanisms(self) -> list[str]:
        return list(self.dataset_target.changed_mechanisms)

    @property
    def nbytes(self) -> int:
        arrays = [self.dataset_source.images, self.dataset_target.images]
        return int(sum(a.nbytes for a in arrays if a is not None) + self.outputs_source.nbytes
                   + self.outputs_target.nbytes)

    def explain(self, **kwargs) -> ShiftExplanation:
        """:func:`explain_shapes_shift` on this case."""
        return explain_shapes_shift(self.outputs_source, self.outputs_target, self.dataset_source, self.dataset_target,
                                    **kwargs)


def shapes_case(model, preset: str, *, n: int = 1000, seed: int = 0, model_name: str | None = None,
                progress: Progress | None = None, cache=None, batch_size: int = 250) -> ShapesShiftCase:
    """Draw ``n`` Shapes test images as the source (seed ``seed``) and ``n`` under shift ``preset``
    as the target (seed ``seed + 1``), and run ``model`` once on each. ``cache`` keeps each
    dataset's outputs (keyed by the model's name and the dataset's fingerprint)."""
    from core.data import load
    from core.data.shapes import SHIFT_PRESETS
    from core.extract import run

    if preset not in SHIFT_PRESETS:
        raise ShiftError(f"Unknown Shapes shift preset {preset!r}; presets: {', '.join(SHIFT_PRESETS)}.")
    name = model_name or str(getattr(model, "card", {}).get("name", type(model).__name__))
    ds_s = load("shapes", split="test", n=n, seed=seed)
    ds_t = load("shapes", split="test", n=n, seed=seed + 1, shift=preset)
    outs = []
    for i, ds in enumerate((ds_s, ds_t)):
        sub = _sub_progress(progress, 0.5 * i, 0.5 * (i + 1))

        def compute(ds=ds, sub=sub):
            out = run(model, ds, batch_size=batch_size, progress=sub)
            out.meta.setdefault("model", name)
            return out

        if cache is not None:
            key = "shift-outputs:" + hashlib.sha1(f"{name}|{ds.fingerprint()}".encode()).hexdigest()[:16]
            outs.append(cache.get_or_compute(key, compute))
        else:
            outs.append(compute())
    if progress is not None:
        progress(1.0, "model outputs ready")
    return ShapesShiftCase(preset, ds_s, ds_t, outs[0], outs[1], name)


__all__ = ["ShapesShiftCase", "explain_outputs_shift", "explain_shapes_shift", "outputs_variables", "shapes_case",
           "shapes_variables"]
