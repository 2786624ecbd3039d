"""Run many detectors over one ID set and several OOD sets, and tabulate the metrics.

The workflow behind the OOD page, kept free of Streamlit so notebooks can use it too::

    sets = {"ID": EvalSet(id_test, "id"), "far: noise": EvalSet(noise_out, "far")}
    result = run_suite(id_train, sets, "ID", {"msp": {}, "knn": {"k": 50}})
    result.summary()          # one row per detector, sorted by mean AUROC
    result.table              # one row per (detector, OOD set)

Every detector is fitted once on the fit outputs and scores every set. A detector that cannot
run is reported in ``result.errors`` (and a failure on a single set in ``result.set_errors``)
instead of stopping the others. Scores can be cached per detector and parameters through any
object with ``get_or_compute(key, fn)``; metrics are recomputed from the cached scores, so
switching the FPR convention costs nothing.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.outputs import ModelOutputs

from .base import REGISTRY, OODError
from .metrics import metrics

METRIC_KEYS = ("auroc", "aupr_in", "aupr_out", "fpr95")


@dataclass
class EvalSet:
    """One scored set: its model outputs, its group ("id", "near", "far", "shift", "upload"), and
    optionally its preprocessed inputs for ODIN (a tensor, or a callable returning batches)."""

    outputs: ModelOutputs
    group: str
    inputs: Any = None


@dataclass
class SuiteResult:
    """Scores and metrics of a suite run.

    ``scores[detector][set]`` holds float64 scores (higher = more ID); ``table`` has one row per
    (detector, OOD set) with ``auroc, aupr_in, aupr_out, fpr95`` under ``convention``.
    """

    id_name: str
    convention: str
    groups: dict[str, str]
    scores: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    params: dict[str, dict] = field(default_factory=dict)
    info: dict[str, dict] = field(default_factory=dict)
    fit_seconds: dict[str, float] = field(default_factory=dict)
    score_seconds: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    set_errors: dict[str, str] = field(default_factory=dict)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: the ID evaluation outputs, their data spec, and (for a split upload) the evaluation half's indices
    id_outputs: ModelOutputs | None = None
    id_spec: dict | None = None
    id_index: np.ndarray | None = None
    #: every scored set's data spec (name -> spec), for showing its samples
    set_specs: dict[str, dict] = field(default_factory=dict)
    #: the request that produced the result (core.ood.workflow.OODRequest) and its fingerprint
    request: Any = None
    fingerprint: str = ""
    _summary: pd.DataFrame | None = field(default=None, init=False, repr=False, compare=False)
    _summary_of: pd.DataFrame | None = field(default=None, init=False, repr=False, compare=False)
    _scores_csv: bytes | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def nbytes(self) -> int:
        """Bytes of the scores and the ID outputs (what a byte-bounded cache charges)."""
        n = sum(s.nbytes for per_set in self.scores.values() for s in per_set.values())
        return int(n + (self.id_outputs.nbytes if self.id_outputs is not None else 0))

    def scores_csv(self) -> bytes:
        """Every score as CSV (detector, set, index, score), built once per result: a page reruns on every
        click and this is the slow part of a rerun (0.5 s for 25 detectors on the default sets)."""
        if self._scores_csv is None:
            rows = [pd.DataFrame({"detector": det, "set": s, "index": np.arange(len(v)), "score": v})
                    for det, per_set in self.scores.items() for s, v in per_set.items()]
            self._scores_csv = pd.concat(rows, ignore_index=True).to_csv(index=False).encode() if rows else b""
        return self._scores_csv

    @property
    def detectors(self) -> list[str]:
        return list(self.scores)

    def with_convention(self, convention: str) -> SuiteResult:
        """The same scores with every metric recomputed under another FPR@95 convention (no detector reruns)."""
        other = dataclasses.replace(self, convention=convention)
        other.compute_table()
        return other

    def compute_table(self) -> pd.DataFrame:
        rows = []
        for det, per_set in self.scores.items():
            s_id = per_set[self.id_name]
            for name, s in per_set.items():
                if name == self.id_name:
                    continue
                m = metrics(s_id, s, convention=self.convention)
                rows.append({"detector": det, "ood_set": name, "group": self.groups.get(name, ""),
                             **{k: m[k] for k in METRIC_KEYS}})
        cols = ["detector", "ood_set", "group", *METRIC_KEYS]
        self.table = pd.DataFrame(rows, columns=cols)
        return self.table

    def summary(self) -> pd.DataFrame:
        """One row per detector: each metric's mean over the OOD sets (``auroc_mean``, …) and, when the
        sets fall in more than one group, its mean per group (``auroc_near``, ``fpr95_far``, …; every
        group weighs its sets equally), then ``sets`` (how many OOD sets the detector scored) and
        fit/score seconds; sorted by mean AUROC (best first).

        The means compare like with like: when some detector could not score a set, every mean is
        taken over the sets that all detectors scored. ``summary().attrs`` names them
        (``mean_over``) and the sets left out with the detectors that missed them (``left_out``).
        Computed once per table; each call returns a copy."""
        if self._summary is None or self._summary_of is not self.table:
            self._summary, self._summary_of = self._compute_summary(), self.table
        out = self._summary.copy()
        out.attrs = {k: (dict(v) if isinstance(v, dict) else list(v)) for k, v in self._summary.attrs.items()}
        return out

    def _compute_summary(self) -> pd.DataFrame:
        t = self.table
        if t.empty:
            return pd.DataFrame(columns=["detector", "auroc_mean", "sets", "fit_s", "score_s"])
        sets_of = t.groupby("detector", sort=False)["ood_set"].agg(frozenset)
        every = list(dict.fromkeys(t["ood_set"]))
        common = [name for name in every if all(name in got for got in sets_of)]
        left_out = {name: [d for d, got in sets_of.items() if name not in got] for name in every
                    if name not in common}
        if left_out and common:
            t = t[t["ood_set"].isin(common)]
        means = t.groupby("detector", sort=False)[list(METRIC_KEYS)].mean()
        groups = list(dict.fromkeys(t["group"]))
        out = pd.DataFrame(index=means.index)
        for key in METRIC_KEYS:
            out[f"{key}_mean"] = means[key]
            if len(groups) > 1:
                per_group = t.pivot_table(index="detector", columns="group", values=key, aggfunc="mean")
                for g in groups:
                    out[f"{key}_{g}"] = per_group[g]
        out["sets"] = [len(sets_of[d]) for d in out.index]
        out["fit_s"] = [self.fit_seconds.get(d, np.nan) for d in out.index]
        out["score_s"] = [self.score_seconds.get(d, np.nan) for d in out.index]
        out = out.sort_values("auroc_mean", ascending=False, kind="stable").reset_index(names="detector")
        out.attrs["mean_over"] = common if common else every
        out.attrs["left_out"] = left_out if common else {}
        return out


def _fit_entry(det_name: str, params: dict, fit_out: ModelOutputs, model,
               validation: ModelOutputs | None = None) -> dict:
    """Fit one detector. The entry keeps the fitted detector and, under ``"scores"``, the result of
    every set scored with it so far (set key -> (scores or None, error or None, seconds)); a
    byte-bounded cache re-measures the entry as it grows (``recharge``)."""
    spec = REGISTRY[det_name]
    det = spec.cls(model=model if "model" in spec.needs else None, **params)
    use_validation = spec.fit_on == "validation" and validation is not None
    t0 = time.perf_counter()
    det.fit(validation if use_validation else fit_out)
    fit_s = time.perf_counter() - t0
    if use_validation:
        det.info["fitted on"] = f"the validation set ({len(validation)} held-out ID samples)"
    elif spec.fit_on == "validation":
        det.info["fitted on"] = (f"the fit set ({len(fit_out)} samples): no held-out validation set was given, "
                                 "so if the model was trained on it the calibration is optimistic")
    elif spec.requires_fit or spec.class_conditional:
        det.info["fitted on"] = f"the fit set ({len(fit_out)} samples)"
    return {"detector": det, "fit_s": fit_s, "params": dict(det.params), "scores": {}}


def _score_set(det, name: str, es: EvalSet) -> tuple[np.ndarray | None, str | None, float]:
    spec = det.spec
    t0 = time.perf_counter()
    try:
        if "inputs" in spec.needs:
            if es.inputs is None:
                raise OODError(f"{spec.name} needs the input images of '{name}', which are not available.")
            s = det.score(es.outputs, inputs=es.inputs)
        else:
            s = det.score(es.outputs)
    except OODError as exc:
        return None, str(exc), 0.0
    return s, None, time.perf_counter() - t0


def run_suite(fit_outputs: ModelOutputs, sets: dict[str, EvalSet], id_name: str, detectors: dict[str, dict],
              model=None, convention: str = "ood-positive", progress: Callable[[float, str], None] | None = None,
              cache=None, cache_key: Callable[[str, dict], str] | None = None,
              validation: ModelOutputs | None = None, set_keys: dict[str, str] | None = None) -> SuiteResult:
    """Fit every detector on ``fit_outputs`` and score every set in ``sets``.

    ``validation``: held-out labelled ID outputs for the detectors that calibrate on validation
    data (``spec.fit_on == "validation"``: TempScale); without it they fit on ``fit_outputs``.
    The key from ``cache_key`` must then distinguish the validation set too.
    ``sets[id_name]`` is the ID evaluation set; every other set is scored as OOD against it.
    ``detectors`` maps detector ids to their parameters. ``model`` is handed to detectors that need
    it (ODIN). ``cache`` (anything with ``get_or_compute(key, fn)``) with ``cache_key(det, params)``
    reuses fitted detectors and their scores from earlier runs: the key must identify the fit (fit
    outputs, validation outputs, model), and ``set_keys`` maps each set's name to a key of its
    contents, so that a detector fitted before scores only the sets it has not seen. Without
    ``set_keys`` the set names are the keys (``cache_key`` must then cover the sets too).
    ``progress(fraction, message)`` is called as work proceeds.
    """
    if id_name not in sets:
        raise OODError(f"The ID set '{id_name}' is not among the sets ({', '.join(sets)}).")
    if convention not in ("ood-positive", "id-positive"):
        raise OODError(f"convention must be 'ood-positive' or 'id-positive', got {convention!r}.")
    result = SuiteResult(id_name=id_name, convention=convention, groups={k: v.group for k, v in sets.items()})
    valid_sets = {}
    for name, es in sets.items():
        if len(es.outputs) == 0:
            if name == id_name:
                raise OODError(f"The ID set '{id_name}' has no samples.")
            result.set_errors[name] = "the set has no samples."
            continue
        valid_sets[name] = es
    n_det = max(len(detectors), 1)
    n_sets = len(valid_sets)
    caching = cache is not None and cache_key is not None
    for i, (det_name, params) in enumerate(detectors.items()):
        if det_name not in REGISTRY:
            result.errors[det_name] = f"unknown detector '{det_name}'."
            continue
        name = REGISTRY[det_name].name
        if progress is not None:
            progress(i / n_det, f"{name}: fitting")

        def fit(det_name=det_name, params=params):
            return _fit_entry(det_name, params or {}, fit_outputs, model, validation)

        try:
            entry = cache.get_or_compute(cache_key(det_name, params or {}), fit) if caching else fit()
            scores, set_errors, score_s = {}, {}, 0.0
            for k, (set_name, es) in enumerate(valid_sets.items()):
                if progress is not None:
                    progress((i + k / max(n_sets, 1)) / n_det, f"{name} on {set_name}")
                key = set_keys.get(set_name, set_name) if set_keys else set_name
                done = entry["scores"].get(key) if caching else None
                if done is None:
                    done = _score_set(entry["detector"], set_name, es)
                    if caching:
                        entry["scores"][key] = done
                        if hasattr(cache, "recharge"):  # the entry grew: a byte-bounded cache re-measures it
                            cache.recharge(cache_key(det_name, params or {}))
                s, err, sec = done
                if err is not None:
                    if set_name == id_name:
                        raise OODError(err)
                    set_errors[set_name] = err
                    continue
                scores[set_name] = s
                score_s += sec
        except OODError as exc:
            result.errors[det_name] = str(exc)
            continue
        except Exception as exc:  # one broken detector must not take the others down; say what happened
            result.errors[det_name] = f"{type(exc).__name__}: {exc}"
            continue
        result.scores[det_name] = scores
        result.params[det_name] = entry["params"]
        result.info[det_name] = dict(entry["detector"].info)  # after scoring: some detectors note facts then
        result.fit_seconds[det_name] = entry["fit_s"]
        result.score_seconds[det_name] = score_s
        for set_name, msg in set_errors.items():
            result.set_errors[f"{set_name} · {name}"] = msg
    if progress is not None:
        progress(1.0, "done")
    result.compute_table()
    return result


def flagged_counts(scores: dict[str, np.ndarray], threshold: float) -> pd.DataFrame:
    """Per set: how many samples score at or below ``threshold`` (flagged as OOD; the rule of
    :func:`core.ood.metrics` and :func:`core.ood.roc_curve`)."""
    rows = []
    for name, s in scores.items():
        s = np.asarray(s)
        flagged = int((s <= threshold).sum())
        rows.append({"set": name, "n": len(s), "flagged": flagged, "share flagged": flagged / max(len(s), 1)})
    return pd.DataFrame(rows, columns=["set", "n", "flagged", "share flagged"])


def extremes(scores: dict[str, np.ndarray], k: int = 8) -> tuple[list[tuple[str, int, float]], list[tuple[str, int, float]]]:
    """The k lowest-scoring (most OOD-looking) and k highest-scoring samples over all sets, as
    ``(set, index, score)``; lowest first and highest first respectively."""
    names, idx, vals = [], [], []
    for name, s in scores.items():
        s = np.asarray(s, np.float64)
        names += [name] * len(s)
        idx.append(np.arange(len(s)))
        vals.append(s)
    if not vals:
        return [], []
    idx, vals = np.concatenate(idx), np.concatenate(vals)
    order = np.argsort(vals, kind="stable")
    low = [(names[j], int(idx[j]), float(vals[j])) for j in order[:k]]
    high = [(names[j], int(idx[j]), float(vals[j])) for j in order[::-1][:k]]
    return low, high


def per_class(score_id: np.ndarray, labels: np.ndarray, class_names: list[str], score_ood: np.ndarray,
              convention: str = "ood-positive") -> pd.DataFrame:
    """Metrics of each ID class's scores against the OOD scores (classes without samples are skipped)."""
    score_id, labels = np.asarray(score_id), np.asarray(labels)
    if len(score_id) != len(labels):
        raise OODError(f"per_class: {len(score_id)} ID scores but {len(labels)} labels.")
    rows = []
    for c, name in enumerate(class_names):
        mask = labels == c
        if not mask.any():
            continue
        m = metrics(score_id[mask], score_ood, convention=convention)
        rows.append({"class": name, "n": int(mask.sum()), **{k: m[k] for k in METRIC_KEYS}})
    return pd.DataFrame(rows, columns=["class", "n", *METRIC_KEYS])
