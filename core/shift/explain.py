"""Attribute a change in model performance between two datasets to the mechanisms that shifted.

Zhang, Singh, Ghassemi & Joshi, "Why did the Model Fail?": Attributing Model Performance Changes
to Distribution Shifts (ICML 2023).

The game
--------
The players are the mechanisms of the graph's Markov factorisation P(V) = Π_v P(v | pa(v)). For a
coalition S, D̃_S is the distribution whose mechanisms in S take their target form and the others
their source form, and

    v(S) = Perf(D̃_S) − Perf(D_source),    so v(∅) = 0 and v(N) = Perf_target − Perf_source = Δ.

The attribution of a mechanism is its Shapley value; the attributions add up to Δ.

Estimating v(S)
---------------
*From the source* (the paper): Perf(D̃_S) = E_source[w_S · ℓ] with w_S = Π_{j∈S} w_j, w_j the
mechanism's density ratio p_T/p_S (:mod:`core.shift.weights`), clipped at c and self-normalised:
v̂_S(S) = Σ w_S ℓ / Σ w_S − Perf_source.

*From the target*: D̃_S is also the target with the mechanisms *outside* S switched back to their
source form, so Perf(D̃_S) = E_target[Π_{j∉S} w_j⁻¹ · ℓ]. This needs the target to cover D̃_S where
the source-side estimate needs the source to. Averaging the two with equal weights is the
"symmetrised" estimate (its Shapley values are (φ(s→t) − φ(t→s))/2: the reverse game's value of R is
v(N∖R) − Δ, so its Shapley values are exactly −φ).

*Overlap-weighted* (default): each coalition mixes the two by λ_S = a_s/(a_s + a_t) with
a = ESS · min(coverage, 1)², where ESS = (Σw)²/Σw² and the coverage is the mean unnormalised weight
(E_source[w_S] is the share of D̃_S's mass that the source's support holds; 1 when it holds all).
A shift that leaves the source's support (textured backgrounds never seen in the source) ruins the
source-side estimate of every coalition containing it, but not the target-side one, and vice
versa; the mix uses the side that can see the coalition.

Efficiency
----------
The Shapley values of the estimated game add up to v̂(N) − v̂(∅), which differs from the observed
change Δ when the weights are off (classifiers smooth the largest ratios, so both sides tend to
under-state a shift: the source side's v̂(N) falls short of Δ and the target side's v̂(∅) exceeds
0). Forcing the exact endpoints (v̂(∅) = 0 from the source side, v̂(N) = Δ from the target side)
would put that shortfall into the step to the grand coalition, which the Shapley weights share
equally among all players; instead the gap Δ − (v̂(N) − v̂(∅)) is shared by the ``efficiency``
rule (default: in proportion to |φ|, :func:`core.shift.shapley.share_residual`) and reported as
``diagnostics.residual``.

Uncertainty
-----------
``bootstrap="rows"`` resamples the rows of both datasets (multinomial counts) with the fitted
weights kept, and recomputes every coalition value, the Shapley values and Δ per replicate: a
matrix product per chunk of rows. ``"refit"`` also refits every classifier per replicate.
Intervals are percentile intervals.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.importance import Importance
from core.kernels.coalitions import auroc_coalitions, mask_products, subset_products

from .base import METRICS, ShiftError, ShiftSettings, metric_capabilities
from .drift import C2STResult, LabelShiftEstimate, c2st_from_auc, drift_table, label_shift
from .graph import Mechanism, ShiftGraph, make_graph
from .metrics import SortedScores, check_probabilities, per_sample_values
from .shapley import (
    all_masks,
    exact_shapley,
    permutation_masks,
    permutation_shapley,
    resolve_method,
    sample_permutations,
    share_residual,
)
from .weights import ColumnTable, DomainFit, check_sample_sizes, fit_domain_classifier

Progress = Callable[[float, str], None]
#: rows per block when building coalition weights (bounds the [rows, coalitions] temporaries)
BLOCK_ELEMENTS = 1 << 21
#: coverage below which a coalition counts as not seen by a side
LOW_COVERAGE = 0.5


# ---------------------------------------------------------------------------- result types
@dataclass
class ClassifierReport:
    """One fitted domain classifier: the nodes and columns it saw and its out-of-fold diagnostics."""

    nodes: tuple[str, ...]
    columns: tuple[str, ...]
    auc: float
    brier: float
    ece: float
    reliability: np.ndarray  # [bins, 3]: mean predicted P(target), observed target share, rows
    share_clipped: float
    seconds: float
    skipped: str | None = None

    @property
    def label(self) -> str:
        return " + ".join(self.nodes)


@dataclass
class MechanismReport:
    """Diagnostics of one mechanism's weights w_j (source rows) and w_j⁻¹ (target rows).

    ``source_coverage`` = mean over source rows of w_j (the share of the target mechanism's mass the
    source covers), ``target_coverage`` = mean over target rows of 1/w_j (vice versa); ``ess_share``
    = ESS/n of the clipped w_j on the source; ``value_alone`` = v({j}), the change if only this
    mechanism had shifted; ``auc`` of the classifier on the node and its parents."""

    mechanism: Mechanism
    auc: float
    parents_auc: float | None
    source_coverage: float
    target_coverage: float
    ess_share: float
    share_clipped: float
    value_alone: float
    weight_quantiles: tuple[float, float, float]  # 1%, 50%, 99% of w_j over source rows


@dataclass
class CoalitionTable:
    """Every evaluated coalition: ``masks`` (bit j = ``players[j]``), the combined value and both
    sides' estimates, the mixing weight λ of the source side, and each side's ESS, coverage and share
    of rows clipped."""

    players: tuple[str, ...]
    masks: np.ndarray
    value: np.ndarray
    source_value: np.ndarray
    target_value: np.ndarray
    mix: np.ndarray
    source_ess: np.ndarray
    target_ess: np.ndarray
    source_coverage: np.ndarray
    target_coverage: np.ndarray
    source_clipped: np.ndarray
    target_clipped: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(sum(getattr(self, f.name).nbytes for f in dataclasses.fields(self)
                       if isinstance(getattr(self, f.name), np.ndarray)))

    def members(self, mask: int) -> list[str]:
        return [p for j, p in enumerate(self.players) if (int(mask) >> j) & 1]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({
            "coalition": [", ".join(self.members(m)) or "∅" for m in self.masks],
            "size": [len(self.members(m)) for m in self.masks], "value": self.value,
            "source_value": self.source_value, "target_value": self.target_value, "source_mix": self.mix,
            "source_ess": self.source_ess, "target_ess": self.target_ess,
            "source_coverage": self.source_coverage, "target_coverage": self.target_coverage,
            "source_clipped": self.source_clipped, "target_clipped": self.target_clipped})


@dataclass
class Timings:
    """Seconds spent: ``classifiers`` (everything around the domain classifiers), of which
    ``classifier_fits`` inside their ``fit`` calls; ``coalitions`` (weights, values and Shapley values
    of the point estimate); ``bootstrap``; ``audit`` (drift table, label-shift estimate); ``total``."""

    classifiers: float = 0.0
    classifier_fits: float = 0.0
    coalitions: float = 0.0
    bootstrap: float = 0.0
    audit: float = 0.0
    total: float = 0.0
    cached_classifiers: int = 0


@dataclass
class ShiftDiagnostics:
    """Everything that says how far to trust an explanation.

    ``ess``/``ess_share``: effective sample size of the source re-weighted by all mechanisms (and
    ``target_ess``/``target_ess_share`` of the target re-weighted back); ``share_clipped``: rows whose
    grand-coalition weight hit the clip (``max_share_clipped``: the worst coalition);
    ``source_side_change``: the source-side estimate of the whole change v̂(N), and
    ``target_side_change``: the target side's (Δ − v̂_T(∅)); both should be close to the observed
    change when the weights are right. ``unidentified``: coalitions that neither dataset covers.
    ``residual``: the part of the observed change the estimated game missed (shared by the
    efficiency rule); ``unadjusted``: the attributions before that sharing."""

    classifiers: list[ClassifierReport]
    mechanisms: list[MechanismReport]
    ess: float
    ess_share: float
    target_ess: float
    target_ess_share: float
    share_clipped: float
    max_share_clipped: float
    source_side_change: float
    target_side_change: float
    shapley: str
    n_coalitions: int
    n_permutations: int | None
    estimator: str
    unidentified: list[str]
    columns_outside_graph: list[str]
    timings: Timings
    warnings: list[str] = field(default_factory=list)
    #: the Shapley values of the estimated game before the efficiency rule shared the residual
    unadjusted: dict[str, float] = field(default_factory=dict)
    #: observed change − (v̂(N) − v̂(∅)): what the efficiency rule shared out
    residual: float = 0.0

    @property
    def nbytes(self) -> int:
        return int(sum(c.reliability.nbytes for c in self.classifiers))


@dataclass
class ShiftExplanation:
    """The result of :func:`explain_performance_change` and the workflows.

    ``total`` = target performance − source performance in ``metric`` (for a loss, positive = worse);
    ``attributions[node]`` the Shapley value of the node's mechanism (they add up to ``total``);
    ``ci[node]`` and ``total_ci`` bootstrap percentile intervals ((nan, nan) without a bootstrap);
    ``weights`` float32 [n_source]: every source row's weight under all mechanisms (clipped; the
    rows most like the target weigh most); ``target_weights`` float32 [n_target]: every target row's
    weight towards the source; ``mechanism_weights`` float32 [n_source, P]: w_j per row and mechanism
    (unclipped); ``boot_attributions`` [B, P] and ``boot_total`` [B] the replicates."""

    metric: str
    metric_name: str
    higher_is_better: bool
    source_performance: float
    target_performance: float
    total: float
    mechanisms: list[Mechanism]
    attributions: dict[str, float]
    ci: dict[str, tuple[float, float]]
    total_ci: tuple[float, float]
    diagnostics: ShiftDiagnostics
    weights: np.ndarray
    target_weights: np.ndarray
    mechanism_weights: np.ndarray
    coalitions: CoalitionTable
    boot_attributions: np.ndarray | None
    boot_total: np.ndarray | None
    drift: pd.DataFrame | None
    c2st: C2STResult | None
    label_shift: LabelShiftEstimate | None
    graph: ShiftGraph
    settings: ShiftSettings
    seed: int
    n_source: int
    n_target: int
    fingerprint: str
    #: model, data, source and target names for the importances' provenance
    provenance: dict[str, Any] = field(default_factory=dict)
    #: the mechanisms known to have changed (the Shapes presets record them), else None
    changed_mechanisms: list[str] | None = None
    #: what the graph's variables are ("the Shapes factor table", "8 principal components of the features", ...)
    variables: str = "the data's columns"

    @property
    def nodes(self) -> list[str]:
        return [m.node for m in self.mechanisms]

    @property
    def mechanism_names(self) -> dict[str, str]:
        """node → "P(node | parents)"."""
        return {m.node: m.name for m in self.mechanisms}

    @property
    def significant(self) -> bool | None:
        """Whether the bootstrap interval of the total change excludes 0 (None without a bootstrap)."""
        lo, hi = self.total_ci
        if not np.isfinite(lo):
            return None
        return bool(lo > 0 or hi < 0)

    @property
    def nbytes(self) -> int:
        arrays = [self.weights, self.target_weights, self.mechanism_weights, self.boot_attributions, self.boot_total]
        n = sum(a.nbytes for a in arrays if a is not None) + self.coalitions.nbytes + self.diagnostics.nbytes
        if self.drift is not None:
            n += int(self.drift.memory_usage(deep=True).sum())
        return int(n)

    def most_target_like(self, k: int = 16) -> np.ndarray:
        """Indices of the k source rows with the largest weight (the most target-like), largest first."""
        k = int(min(max(k, 0), len(self.weights)))
        return np.argsort(-self.weights.astype(np.float64), kind="stable")[:k]

    def most_source_like(self, k: int = 16) -> np.ndarray:
        """Indices of the k target rows with the largest weight towards the source, largest first."""
        k = int(min(max(k, 0), len(self.target_weights)))
        return np.argsort(-self.target_weights.astype(np.float64), kind="stable")[:k]

    def to_frame(self) -> pd.DataFrame:
        """One row per mechanism: attribution, interval, share of the total and the diagnostics."""
        rows = []
        reports = {r.mechanism.node: r for r in self.diagnostics.mechanisms}
        for m in self.mechanisms:
            r = reports[m.node]
            lo, hi = self.ci[m.node]
            phi = self.attributions[m.node]
            rows.append({"node": m.node, "mechanism": m.name, "attribution": phi, "ci_low": lo, "ci_high": hi,
                         "share_of_total": phi / self.total if self.total != 0 else np.nan,
                         "value_alone": r.value_alone, "classifier_auc": r.auc,
                         "source_coverage": r.source_coverage, "target_coverage": r.target_coverage,
                         "ess_share": r.ess_share, "share_clipped": r.share_clipped})
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no per-row arrays)."""
        d = self.diagnostics

        def num(x):
            return None if x is None or not np.isfinite(x) else float(x)

        return {
            "metric": self.metric, "higher_is_better": self.higher_is_better,
            "source_performance": num(self.source_performance), "target_performance": num(self.target_performance),
            "total": num(self.total), "total_ci": [num(v) for v in self.total_ci],
            "attributions": [{"node": m.node, "mechanism": m.name, "value": num(self.attributions[m.node]),
                              "ci": [num(v) for v in self.ci[m.node]]} for m in self.mechanisms],
            "graph": self.graph.to_dict(), "settings": self.settings.as_dict(), "seed": self.seed,
            "n_source": self.n_source, "n_target": self.n_target,
            "diagnostics": {
                "ess_share": num(d.ess_share), "target_ess_share": num(d.target_ess_share),
                "share_clipped": num(d.share_clipped), "source_side_change": num(d.source_side_change),
                "target_side_change": num(d.target_side_change), "residual": num(d.residual), "shapley": d.shapley,
                "n_coalitions": d.n_coalitions, "estimator": d.estimator, "unidentified": d.unidentified,
                "warnings": d.warnings,
                "classifiers": [{"nodes": list(c.nodes), "auc": num(c.auc), "brier": num(c.brier), "ece": num(c.ece)}
                                for c in d.classifiers],
                "mechanisms": [{"mechanism": r.mechanism.name, "auc": num(r.auc), "source_coverage":
                                num(r.source_coverage), "target_coverage": num(r.target_coverage),
                                "ess_share": num(r.ess_share), "value_alone": num(r.value_alone)}
                               for r in d.mechanisms]},
            "c2st": None if self.c2st is None else {"auc": num(self.c2st.auc), "score": num(self.c2st.score),
                                                    "p_value": num(self.c2st.p_value)},
            "provenance": {k: v for k, v in self.provenance.items() if isinstance(v, (str, int, float, bool))},
            "changed_mechanisms": self.changed_mechanisms, "variables": self.variables,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def to_importances(self) -> list[Importance]:
        """The attributions as importance over mechanisms (unit "mechanism"), and the source rows'
        weights as importance over samples (unit "sample"; float32, not copied)."""
        base = {"analysis": "shift", "metric": self.metric, **{k: v for k, v in self.provenance.items()
                                                                 if k in ("model", "data", "source", "target")}}
        params = {k: v for k, v in self.settings.as_dict().items() if k != "classifier_params"}
        mech = Importance(values=np.array([self.attributions[n] for n in self.nodes], np.float64), unit="mechanism",
                          names=[m.name for m in self.mechanisms],
                          provenance={**base, "method": "Shapley attribution of the performance change",
                                      "parameters": params})
        samples = Importance(values=self.weights, unit="sample",
                             provenance={**base, "method": "importance weights (all mechanisms)", "parameters": params})
        return [mech, samples]


# ---------------------------------------------------------------------------- input checks
def _check_frames(source, target, label: str) -> None:
    for name, df in (("source", source), ("target", target)):
        if not isinstance(df, pd.DataFrame):
            raise ShiftError(f"The {name} must be a pandas DataFrame, got {type(df).__name__}.")
    if label not in source.columns and label not in target.columns:
        raise ShiftError(f"The label column '{label}' is in neither dataset. Columns: {', '.join(map(str, source.columns))}.")
    if label not in target.columns:
        raise ShiftError(f"The label column '{label}' is missing from the target; the change in performance needs the "
                         "target's labels. Add the column (same name as in the source).")
    if label not in source.columns:
        raise ShiftError(f"The label column '{label}' is missing from the source; add it (same name as in the target).")
    only_s = [c for c in source.columns if c not in target.columns]
    only_t = [c for c in target.columns if c not in source.columns]
    if only_s or only_t:
        parts = []
        if only_s:
            parts.append(f"only in the source: {', '.join(map(str, only_s))}")
        if only_t:
            parts.append(f"only in the target: {', '.join(map(str, only_t))}")
        raise ShiftError("Source and target must have the same columns; " + "; ".join(parts) + ".")


def _check_missing(source: pd.DataFrame, target: pd.DataFrame, columns: Sequence[str]) -> None:
    for name, df in (("source", source), ("target", target)):
        counts = df[list(columns)].isna().sum()
        bad = counts[counts > 0]
        if len(bad):
            col, k = bad.index[0], int(bad.iloc[0])
            more = f" (and {len(bad) - 1} more column(s))" if len(bad) > 1 else ""
            raise ShiftError(f"Column '{col}' has {k} missing value(s) in the {name}{more}; the domain classifiers "
                             "need complete rows. Fill or drop them first.")


def _labels(source: pd.DataFrame, target: pd.DataFrame, label: str, n_classes: int, classes: Sequence | None,
            task: str) -> tuple[np.ndarray, np.ndarray, list]:
    """Class indices (or numbers for regression) of both datasets' labels, and the class values."""
    s, t = source[label], target[label]
    for name, col in (("source", s), ("target", t)):
        if col.isna().any():
            raise ShiftError(f"The label '{label}' has {int(col.isna().sum())} missing value(s) in the {name}.")
    if task == "regression":
        try:
            return s.to_numpy(np.float64), t.to_numpy(np.float64), []
        except (TypeError, ValueError):
            raise ShiftError(f"metric='mse' needs a numeric label; '{label}' holds {s.dtype} values.") from None
    if classes is not None:
        classes = list(classes)
        if len(classes) != n_classes:
            raise ShiftError(f"classes names {len(classes)} classes but the probabilities have {n_classes} columns.")
        lookup = {c: i for i, c in enumerate(classes)}
        unknown = sorted({str(v) for v in pd.concat([s, t]).unique() if v not in lookup})
        if unknown:
            raise ShiftError(f"The label takes value(s) {', '.join(unknown[:5])} that are not in classes.")
        return s.map(lookup).to_numpy(np.int64), t.map(lookup).to_numpy(np.int64), classes
    values = pd.concat([s, t], ignore_index=True)
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        v = values.to_numpy(np.float64)
        if np.all(v == np.round(v)) and v.min() >= 0 and v.max() < n_classes:
            return s.to_numpy(np.int64), t.to_numpy(np.int64), list(range(n_classes))
    uniques = sorted(values.unique().tolist(), key=lambda x: (str(type(x)), x))
    if len(uniques) != n_classes:
        raise ShiftError(f"The label '{label}' takes {len(uniques)} distinct value(s) ({', '.join(map(str, uniques[:6]))}"
                         f"{', ...' if len(uniques) > 6 else ''}) but the probabilities have {n_classes} columns; pass "
                         "classes=[the class of each column] to say which column is which.")
    lookup = {c: i for i, c in enumerate(uniques)}
    return s.map(lookup).to_numpy(np.int64), t.map(lookup).to_numpy(np.int64), uniques


# ---------------------------------------------------------------------------- the engine
def _side_sums(logw: np.ndarray, loss: np.ndarray, masks: np.ndarray, full_set: bool, log_clip: float,
               counts: np.ndarray | None) -> dict[str, np.ndarray]:
    """Per coalition: Σw, Σwℓ, Σw², Σ(unclipped w), rows clipped; with bootstrap ``counts`` [B, n]
    also Σ count·w and Σ count·w·ℓ per replicate [B, K] and Σ count·ℓ [B] (in blocks of rows, so no
    [B, n] float array is ever made)."""
    n, p = logw.shape
    k = len(masks)
    out = {"sw": np.zeros(k), "swl": np.zeros(k), "sw2": np.zeros(k), "raw": np.zeros(k),
           "clipped": np.zeros(k, np.int64)}
    if counts is not None:
        out["boot_sw"] = np.zeros((len(counts), k))
        out["boot_swl"] = np.zeros((len(counts), k))
        out["boot_sl"] = np.zeros(len(counts))
    block = max(1, BLOCK_ELEMENTS // max(k, 1))
    for start in range(0, n, block):
        stop = min(n, start + block)
        lw = np.ascontiguousarray(logw[start:stop])
        if full_set:
            w = np.empty((stop - start, k))
            raw = np.zeros(k)
            clipped = np.zeros(k, np.int64)
            subset_products(lw, log_clip, w, raw, clipped)
        else:
            w, raw, clipped = mask_products(lw, masks, log_clip)
        wl = w * loss[start:stop, None]
        out["sw"] += w.sum(0)
        out["swl"] += wl.sum(0)
        out["sw2"] += np.einsum("ij,ij->j", w, w)
        out["raw"] += raw
        out["clipped"] += clipped
        if counts is not None:
            c = counts[:, start:stop].astype(np.float64)
            out["boot_sw"] += c @ w
            out["boot_swl"] += c @ wl
            out["boot_sl"] += c @ loss[start:stop]
    return out


def _bootstrap_counts(n: int, b: int, rng: np.random.Generator) -> np.ndarray:
    """[b, n] multinomial counts (how often each row is drawn in each replicate), uint16."""
    out = np.empty((b, n), np.uint16)
    for r in range(b):
        out[r] = np.bincount(rng.integers(0, n, n), minlength=n)
    return out


class _Explainer:
    """One explanation run: holds the validated inputs; :meth:`run` returns the result."""

    def __init__(self, vs: pd.DataFrame, vt: pd.DataFrame, ps: np.ndarray, pt: np.ndarray, ys: np.ndarray,
                 yt: np.ndarray, graph: ShiftGraph, metric: str, task: str, label: str, settings: ShiftSettings,
                 seed: int, categorical: Sequence[str], progress: Progress | None, cache, audit: bool,
                 provenance: dict[str, Any]):
        self.vs, self.vt, self.ps, self.pt, self.ys, self.yt = vs, vt, ps, pt, ys, yt
        self.graph, self.metric, self.task, self.label = graph, metric, task, label
        self.settings, self.seed, self.categorical = settings, seed, list(categorical)
        self.progress, self.cache, self.audit, self.provenance = progress, cache, audit, provenance
        self.timings = Timings()

    def _report(self, fraction: float, message: str) -> None:
        if self.progress is not None:
            self.progress(float(min(max(fraction, 0.0), 1.0)), message)

    # -- classifiers
    def _needed_sets(self) -> dict[tuple[str, ...], tuple[str, ...]]:
        """Column tuple → node tuple of every classifier the mechanisms need (shared ones once)."""
        g = self.graph
        sets: dict[tuple[str, ...], tuple[str, ...]] = {}
        for m in g.mechanisms:
            for nodes in ([m.node],) if m.is_root else (list(m.parents) + [m.node], list(m.parents)):
                ordered = tuple(n for n in g.order if n in set(nodes))
                sets.setdefault(g.columns_of(ordered), ordered)
        if self.audit:
            sets.setdefault(g.columns_of(g.order), tuple(g.order))
        return sets

    def _fit_all(self, table: ColumnTable) -> dict[tuple[str, ...], DomainFit]:
        sets = self._needed_sets()
        total = len(sets) * self.settings.folds
        fits: dict[tuple[str, ...], DomainFit] = {}
        t0 = time.perf_counter()
        for i, (cols, nodes) in enumerate(sets.items()):
            label = " + ".join(nodes)
            base = i * self.settings.folds

            def on_fold(k, base=base, label=label):
                self._report(0.8 * (base + k + 1) / total, f"domain classifier {label}: fold {k + 1}/{self.settings.folds}")

            self._report(0.8 * base / total, f"domain classifier {label}")

            def compute(cols=cols, on_fold=on_fold):
                return fit_domain_classifier(table, cols, self.settings, self.seed, on_fold)

            if self.cache is not None:
                key = (f"shift-ratio:{table.fingerprint(cols)}:{table.n_source}:{table.n_target}:"
                       f"{self.settings.weight_key()}:{self.seed}")
                computed: list[int] = []

                def counted(compute=compute, computed=computed):
                    computed.append(1)
                    return compute()

                fit = self.cache.get_or_compute(key, counted)
                if not computed:
                    self.timings.cached_classifiers += 1
                else:
                    self.timings.classifier_fits += fit.fit_seconds
            else:
                fit = compute()
                self.timings.classifier_fits += fit.fit_seconds
            fits[cols] = fit
        self.timings.classifiers = time.perf_counter() - t0
        return fits

    def _log_weights(self, fits: dict[tuple[str, ...], DomainFit]) -> np.ndarray:
        """[n_source + n_target, P]: log w_j of every row (source rows first) for every mechanism."""
        g = self.graph
        cols = []
        for m in g.mechanisms:
            if m.is_root:
                f = fits[g.columns_of([m.node])]
                cols.append(f.log_odds - f.prior_log_odds)
            else:
                joint = fits[g.columns_of(list(m.parents) + [m.node])]
                parents = fits[g.columns_of(list(m.parents))]
                cols.append(joint.log_odds - parents.log_odds)
        return np.column_stack(cols)

    # -- coalition values
    def _values(self, logw_s, logw_t, masks, full_set, counts_s, counts_t):
        """Both sides' coalition values [1 + B, K] (row 0: the point estimate) and their statistics."""
        s = self.settings
        log_clip = float(np.log(s.clip_weight))
        n_s, n_t = len(logw_s), len(logw_t)
        p = logw_s.shape[1]
        full = (1 << p) - 1
        masks_t = full ^ masks
        if full_set:  # the target side's coalition index of every mask: its complement is another mask
            order_t = masks_t
        if self.metric == "auroc":
            loss_s, loss_t = np.zeros(n_s), np.zeros(n_t)
        else:
            loss_s = per_sample_values(self.metric, self.ps, self.ys)
            loss_t = per_sample_values(self.metric, self.pt, self.yt)
        src = _side_sums(logw_s, loss_s, masks, full_set, log_clip, counts_s if self.metric != "auroc" else None)
        if full_set:
            tgt_all = _side_sums(-logw_t, loss_t, masks, True, log_clip,
                                 counts_t if self.metric != "auroc" else None)
            tgt = {k: (v if k == "boot_sl" else v[..., order_t]) for k, v in tgt_all.items()}
        else:
            tgt = _side_sums(-logw_t, loss_t, masks_t, False, log_clip, counts_t if self.metric != "auroc" else None)
        stats = {
            "source_ess": src["sw"] ** 2 / np.maximum(src["sw2"], 1e-300),
            "target_ess": tgt["sw"] ** 2 / np.maximum(tgt["sw2"], 1e-300),
            "source_coverage": src["raw"] / n_s, "target_coverage": tgt["raw"] / n_t,
            "source_clipped": src["clipped"] / n_s, "target_clipped": tgt["clipped"] / n_t,
        }
        if self.metric == "auroc":
            ones_s = np.ones((1, n_s), np.uint16)
            ones_t = np.ones((1, n_t), np.uint16)
            cs = ones_s if counts_s is None else np.vstack([ones_s, counts_s])  # uint16: 2 bytes a row and replicate
            ct = ones_t if counts_t is None else np.vstack([ones_t, counts_t])
            ss = SortedScores(self.ps[:, 1], self.ys)
            st = SortedScores(self.pt[:, 1], self.yt)
            out_s = np.empty((len(cs), len(masks)))
            out_t = np.empty((len(ct), len(masks)))
            auroc_coalitions(ss.scores, ss.positive, np.ascontiguousarray(logw_s[ss.order]), masks, log_clip,
                             np.ascontiguousarray(cs[:, ss.order]), out_s)
            auroc_coalitions(st.scores, st.positive, np.ascontiguousarray(-logw_t[st.order]), masks_t, log_clip,
                             np.ascontiguousarray(ct[:, st.order]), out_t)
            perf_s = out_s[:, masks == 0][:, 0]
            perf_t = out_t[:, masks == full][:, 0]
            v_s, v_t = out_s - perf_s[:, None], out_t - perf_s[:, None]
        else:
            denom_s = src["sw"] if s.self_normalise else n_s
            denom_t = tgt["sw"] if s.self_normalise else n_t
            v_s = (src["swl"] / denom_s)[None, :]
            v_t = (tgt["swl"] / denom_t)[None, :]
            perf_s = np.array([loss_s.mean()])
            perf_t = np.array([loss_t.mean()])
            if counts_s is not None:
                bs = src["boot_sl"] / n_s
                bt = tgt["boot_sl"] / n_t
                bden_s = src["boot_sw"] if s.self_normalise else n_s
                bden_t = tgt["boot_sw"] if s.self_normalise else n_t
                v_s = np.vstack([v_s, src["boot_swl"] / bden_s])
                v_t = np.vstack([v_t, tgt["boot_swl"] / bden_t])
                perf_s = np.r_[perf_s, bs]
                perf_t = np.r_[perf_t, bt]
            v_s = v_s - perf_s[:, None]
            v_t = v_t - perf_s[:, None]
        return v_s, v_t, perf_s, perf_t, stats

    def _mix(self, stats: dict[str, np.ndarray]) -> np.ndarray:
        """λ_S, the source side's share of each coalition's value (see the module docstring)."""
        est = self.settings.estimator
        if est == "source":
            lam = np.ones(len(stats["source_ess"]))
        elif est == "symmetric":
            lam = np.full(len(stats["source_ess"]), 0.5)
        else:
            a_s = stats["source_ess"] * np.minimum(stats["source_coverage"], 1.0) ** 2
            a_t = stats["target_ess"] * np.minimum(stats["target_coverage"], 1.0) ** 2
            tot = a_s + a_t
            lam = np.where(tot > 0, a_s / np.where(tot > 0, tot, 1.0), 0.5)
        return lam

    def run(self) -> ShiftExplanation:
        t_start = time.perf_counter()
        s, g = self.settings, self.graph
        n_s, n_t = len(self.vs), len(self.vt)
        forced = self.categorical + ([self.label] if self.task == "classification" else [])
        table = ColumnTable.build(self.vs, self.vt, g.columns, forced)
        fits = self._fit_all(table)
        self._report(0.8, "coalition values")
        t0 = time.perf_counter()
        logw = self._log_weights(fits)
        logw_s, logw_t = logw[:n_s], logw[n_s:]
        mechanisms = g.mechanisms
        p = len(mechanisms)
        method = resolve_method(s.shapley, p)
        rng = np.random.default_rng(self.seed + 1)
        perms = prefix_index = None
        if method == "exact":
            masks, full_set = all_masks(p), True
        else:
            perms = sample_permutations(p, s.n_permutations, rng)
            masks, prefix_index = permutation_masks(perms)
            singles = np.array([1 << j for j in range(p)], np.int64)
            extra = np.setdiff1d(singles, masks)
            if len(extra):  # v({j}) for the diagnostics; appended after the permutation coalitions
                masks = np.r_[masks, extra]
            full_set = False
        rows_boot = s.n_boot if s.bootstrap == "rows" else 0
        counts_s = _bootstrap_counts(n_s, rows_boot, rng) if rows_boot else None
        counts_t = _bootstrap_counts(n_t, rows_boot, rng) if rows_boot else None
        v_s, v_t, perf_s, perf_t, stats = self._values(logw_s, logw_t, masks, full_set, counts_s, counts_t)
        lam = self._mix(stats)
        values = lam * v_s + (1 - lam) * v_t
        values = values - values[:, masks == 0]  # v(∅) := 0; the Shapley values depend on differences only
        total = perf_t - perf_s
        if method == "exact":
            raw_phi = exact_shapley(values, p)
        else:
            raw_phi = permutation_shapley(values, perms, prefix_index)  # the appended singles are not indexed
        phi = share_residual(raw_phi, total, s.efficiency)
        coalition_seconds = time.perf_counter() - t0
        boot_phi = phi[1:] if rows_boot else None
        boot_total = total[1:] if rows_boot else None
        if rows_boot:
            self.timings.bootstrap = coalition_seconds  # the replicates ride along in the same matrix products
        self.timings.coalitions = coalition_seconds
        if s.n_boot and s.bootstrap == "refit":
            t_b = time.perf_counter()
            boot_phi, boot_total = self._refit_bootstrap(rng)
            self.timings.bootstrap = time.perf_counter() - t_b
        phi0, total0 = phi[0], float(total[0])
        nodes = [m.node for m in mechanisms]
        if boot_phi is not None and len(boot_phi):
            a = (1 - s.ci_level) / 2
            lo, hi = np.quantile(boot_phi, [a, 1 - a], axis=0)
            ci = {n: (float(lo[j]), float(hi[j])) for j, n in enumerate(nodes)}
            tlo, thi = np.quantile(boot_total, [a, 1 - a])
            total_ci = (float(tlo), float(thi))
        else:
            ci = {n: (float("nan"), float("nan")) for n in nodes}
            total_ci = (float("nan"), float("nan"))
        self._report(0.9, "diagnostics")
        t_a = time.perf_counter()
        coalitions = CoalitionTable(
            players=tuple(nodes), masks=masks, value=values[0], source_value=v_s[0], target_value=v_t[0], mix=lam,
            **stats)
        diagnostics = self._diagnostics(fits, logw_s, logw_t, coalitions, float(total0), method,
                                        None if perms is None else len(perms))
        diagnostics.unadjusted = {n: float(raw_phi[0, j]) for j, n in enumerate(nodes)}
        diagnostics.residual = float(total0 - raw_phi[0].sum())
        if abs(diagnostics.residual) > 0.25 * max(abs(total0), 1e-12) and abs(diagnostics.residual) > 1e-3:
            diagnostics.warnings.append(
                f"The estimated coalition values account for {total0 - diagnostics.residual:+.4g} of the observed "
                f"change {total0:+.4g}; the gap ({diagnostics.residual:+.4g}) was shared by the '{s.efficiency}' rule. "
                "A large gap means the density ratios are off (try isotonic calibration or more rows).")
        drift = c2st = ls = None
        if self.audit:
            drift = drift_table(self.vs, self.vt, g.columns, forced)
            whole = fits[g.columns_of(g.order)]
            c2st = c2st_from_auc(whole.auc, n_s, n_t, whole.columns)
            if self.task == "classification" and self.metric != "mse":
                ls = label_shift(self.ps, self.ys, self.pt, "bbse", labels_target=self.yt)
        self.timings.audit = time.perf_counter() - t_a
        clip = s.clip_weight
        weights = np.minimum(np.exp(np.minimum(logw_s.sum(1), 700.0)), clip).astype(np.float32)
        target_weights = np.minimum(np.exp(np.minimum(-logw_t.sum(1), 700.0)), clip).astype(np.float32)
        mech_weights = np.exp(np.clip(logw_s, -80.0, 80.0)).astype(np.float32)
        self.timings.total = time.perf_counter() - t_start
        diagnostics.timings = self.timings
        spec = METRICS.spec(self.metric)
        self._report(1.0, "done")
        return ShiftExplanation(
            metric=self.metric, metric_name=spec.name, higher_is_better=spec.higher_is_better,
            source_performance=float(perf_s[0]), target_performance=float(perf_t[0]), total=total0,
            mechanisms=mechanisms, attributions={n: float(phi0[j]) for j, n in enumerate(nodes)}, ci=ci,
            total_ci=total_ci, diagnostics=diagnostics, weights=weights, target_weights=target_weights,
            mechanism_weights=mech_weights, coalitions=coalitions, boot_attributions=boot_phi, boot_total=boot_total,
            drift=drift, c2st=c2st, label_shift=ls, graph=g, settings=s, seed=self.seed, n_source=n_s, n_target=n_t,
            fingerprint=self._fingerprint(table), provenance=dict(self.provenance))

    def _fingerprint(self, table: ColumnTable) -> str:
        h = hashlib.sha1()
        h.update(table.fingerprint(self.graph.columns).encode())
        h.update(np.ascontiguousarray(self.ps).tobytes())
        h.update(np.ascontiguousarray(self.pt).tobytes())
        h.update(repr((self.graph.to_dict(), self.metric, self.settings, self.seed)).encode())
        return h.hexdigest()[:16]

    def _refit_bootstrap(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        s = self.settings
        n_s, n_t = len(self.vs), len(self.vt)
        phis, totals = [], []
        inner = dataclasses.replace(s, n_boot=0)
        for b in range(s.n_boot):
            self._report(0.8 + 0.1 * b / s.n_boot, f"bootstrap replicate {b + 1}/{s.n_boot} (refitting)")
            i_s, i_t = rng.integers(0, n_s, n_s), rng.integers(0, n_t, n_t)
            sub = _Explainer(self.vs.iloc[i_s].reset_index(drop=True), self.vt.iloc[i_t].reset_index(drop=True),
                             self.ps[i_s], self.pt[i_t], self.ys[i_s], self.yt[i_t], self.graph, self.metric,
                             self.task, self.label, inner, self.seed + 1 + b, self.categorical, None, None, False,
                             {}).run()
            phis.append([sub.attributions[n] for n in sub.nodes])
            totals.append(sub.total)
        return np.array(phis), np.array(totals)

    def _diagnostics(self, fits, logw_s, logw_t, coalitions: CoalitionTable, total: float, method: str,
                     n_perm: int | None) -> ShiftDiagnostics:
        s, g = self.settings, self.graph
        p = logw_s.shape[1]
        full = (1 << p) - 1
        masks = coalitions.masks
        at = {int(m): i for i, m in enumerate(masks)}
        reports = [ClassifierReport(nodes=tuple(n for n in g.order if set(g.groups[n]) & set(cols)), columns=cols,
                                    auc=f.auc, brier=f.brier, ece=f.ece, reliability=f.reliability,
                                    share_clipped=f.share_clipped, seconds=f.seconds, skipped=f.skipped)
                   for cols, f in fits.items()]
        mech_reports = []
        warnings: list[str] = []
        for j, m in enumerate(g.mechanisms):
            w = np.exp(np.clip(logw_s[:, j], -700, 700))
            wc = np.minimum(w, s.clip_weight)
            inv = np.exp(np.clip(-logw_t[:, j], -700, 700))
            joint = fits[g.columns_of([m.node] + list(m.parents))]
            parents_auc = fits[g.columns_of(list(m.parents))].auc if m.parents else None
            q = np.quantile(w, [0.01, 0.5, 0.99])
            rep = MechanismReport(mechanism=m, auc=joint.auc, parents_auc=parents_auc,
                                  source_coverage=float(w.mean()), target_coverage=float(inv.mean()),
                                  ess_share=float(wc.sum() ** 2 / max((wc * wc).sum(), 1e-300) / len(wc)),
                                  share_clipped=float((w > s.clip_weight).mean()),
                                  value_alone=float(coalitions.value[at[1 << j]]),
                                  weight_quantiles=(float(q[0]), float(q[1]), float(q[2])))
            mech_reports.append(rep)
        i_full, i_empty = at[full], at[0]
        n_s, n_t = len(logw_s), len(logw_t)
        ess = float(coalitions.source_ess[i_full])
        t_ess = float(coalitions.target_ess[i_empty])
        unidentified = []
        side_cov = coalitions.source_coverage if s.estimator == "source" else \
            np.maximum(coalitions.source_coverage, coalitions.target_coverage)
        for i, mk in enumerate(masks):
            if 0 < mk < full and side_cov[i] < LOW_COVERAGE:
                unidentified.append("{" + ", ".join(coalitions.members(mk)) + "}")
        if unidentified:
            who = "the source covers" if s.estimator == "source" else "either dataset covers"
            warnings.append(f"{len(unidentified)} of {len(masks)} coalitions are not identified: less than "
                            f"{LOW_COVERAGE:.0%} of their mass lies where {who} (e.g. {', '.join(unidentified[:3])}). "
                            "Importance weighting cannot reach distributions outside the data's support, so the "
                            "attributions of the mechanisms involved are unreliable.")
        for r in mech_reports:
            if r.source_coverage < LOW_COVERAGE and r.target_coverage < LOW_COVERAGE:
                warnings.append(f"{r.mechanism.name}: source and target barely overlap (the source covers "
                                f"{r.source_coverage:.0%} of the target's mass, the target {r.target_coverage:.0%} of "
                                "the source's); only coalitions one side covers can be estimated.")
            elif s.estimator == "source" and r.source_coverage < LOW_COVERAGE:
                warnings.append(f"{r.mechanism.name}: the source covers only {r.source_coverage:.0%} of the target's "
                                "mass; the source-only estimator cannot see this shift (try estimator='overlap').")
        if s.estimator == "source" and ess / n_s < 0.1:
            warnings.append(f"The source re-weighted by all mechanisms keeps an effective sample size of {ess:.0f} of "
                            f"{n_s} rows ({ess / n_s:.1%}); its estimates are noisy.")
        share_clipped = float(coalitions.source_clipped[i_full])
        max_clipped = float(max(coalitions.source_clipped.max(), coalitions.target_clipped.max()))
        if max_clipped > 0.05:
            warnings.append(f"Up to {max_clipped:.0%} of the rows hit the weight clip ({s.clip_weight:g}) in some "
                            "coalition; clipping biases those values towards the unweighted performance.")
        for rep in reports:
            if rep.skipped is None and rep.ece > 0.05:
                warnings.append(f"The domain classifier on {rep.label} is poorly calibrated (expected calibration "
                                f"error {rep.ece:.3f}); its odds ratios are approximate.")
        src_change = float(coalitions.source_value[i_full])
        tgt_change = float(total - coalitions.target_value[i_empty])
        outside = []
        return ShiftDiagnostics(
            classifiers=reports, mechanisms=mech_reports, ess=ess, ess_share=ess / n_s, target_ess=t_ess,
            target_ess_share=t_ess / n_t, share_clipped=share_clipped, max_share_clipped=max_clipped,
            source_side_change=src_change, target_side_change=tgt_change, shapley=method, n_coalitions=len(masks),
            n_permutations=n_perm, estimator=s.estimator, unidentified=unidentified, columns_outside_graph=outside,
            timings=self.timings, warnings=warnings)


# ---------------------------------------------------------------------------- public entry points
def explain_from_probabilities(variables_source: pd.DataFrame, variables_target: pd.DataFrame, probs_source,
                               probs_target, *, label: str, graph: Mapping[str, Sequence[str]],
                               groups: Mapping[str, Sequence[str]] | None = None, metric: str = "log_loss",
                               classes: Sequence | None = None, seed: int = 0, categorical: Sequence[str] = (),
                               settings: ShiftSettings | Mapping[str, Any] | None = None,
                               progress: Progress | None = None, cache=None, audit: bool = True,
                               provenance: Mapping[str, Any] | None = None, **options) -> ShiftExplanation:
    """Explain the change in ``metric`` from stored per-sample model outputs (the model is never run).

    ``variables_*``: the graph's variables per row (the label column included); ``probs_*``: the
    model's class probabilities [N, C] on the same rows (predictions [N] for ``metric="mse"``);
    ``graph``/``groups`` as in :func:`explain_performance_change`. ``settings`` and ``options``
    (keywords of :data:`core.shift.SETTINGS`, e.g. ``classifier="logistic"``, ``n_boot=200``) set the
    method. ``progress(fraction, message)`` is called as work proceeds; ``cache`` (anything with
    ``get_or_compute(key, compute)``) keeps the fitted density ratios, keyed by the columns' content
    and the classifier settings, so a second run with another metric or estimator refits nothing.
    ``audit`` adds the drift table, the C2ST and the label-shift estimate.
    """
    _check_frames(variables_source, variables_target, label)
    s = ShiftSettings.make(settings, **options)
    spec = METRICS.spec(metric)
    task = "regression" if "regression" in spec.needs else "classification"
    g = make_graph(graph, list(variables_source.columns), groups)
    if label not in g.columns:
        raise ShiftError(f"The label '{label}' belongs to no node of the graph. Add it as a node (e.g. "
                         f"graph['{label}'] = [its parents]) so that shifts in P({label}) or P({label} | ...) can be "
                         "attributed.")
    _check_missing(variables_source, variables_target, g.columns)
    n_s, n_t = len(variables_source), len(variables_target)
    ps = check_probabilities(probs_source, n_s, "The model's output on the source", task)
    pt = check_probabilities(probs_target, n_t, "The model's output on the target", task)
    n_classes = 1 if task == "regression" else ps.shape[1]
    if task == "classification" and pt.shape[1] != n_classes:
        raise ShiftError(f"The model gives {n_classes} class probabilities on the source but {pt.shape[1]} on the target.")
    reason = METRICS.unavailable_reason(metric, metric_capabilities(task, n_classes))
    if reason:
        raise ShiftError(reason)
    ys, yt, _ = _labels(variables_source, variables_target, label, n_classes, classes, task)
    if task == "classification":
        for name, y in (("target", yt), ("source", ys)):
            present = np.unique(y)
            if len(present) < 2:
                raise ShiftError(f"The {name} holds a single class ({present[0] if len(present) else 'none'}): its "
                                 "performance says nothing about the other classes and the label mechanism's density "
                                 f"ratio is degenerate. Use a {name} with at least two classes.")
    check_sample_sizes(n_s, n_t, s.folds)
    engine = _Explainer(variables_source.reset_index(drop=True), variables_target.reset_index(drop=True), ps, pt, ys,
                        yt, g, metric, task, label, s, int(seed), categorical, progress, cache, audit,
                        dict(provenance or {}))
    result = engine.run()
    result.diagnostics.columns_outside_graph = [c for c in variables_source.columns if c not in set(g.columns)]
    return result


def explain_performance_change(source: pd.DataFrame, target: pd.DataFrame, *, predict_proba: Callable,
                               label: str, graph: Mapping[str, Sequence[str]],
                               groups: Mapping[str, Sequence[str]] | None = None, metric: str = "accuracy",
                               n_boot: int = 0, seed: int = 0, features: Sequence[str] | None = None,
                               classes: Sequence | None = None, categorical: Sequence[str] = (),
                               settings: ShiftSettings | Mapping[str, Any] | None = None,
                               progress: Progress | None = None, cache=None, audit: bool = True,
                               **options) -> ShiftExplanation:
    """Attribute the change in a model's performance from ``source`` to ``target`` to the mechanisms
    of ``graph`` (Zhang et al., ICML 2023; see the module docstring for the estimator).

    ``source``/``target``: DataFrames with the same columns, the ``label`` column included.
    ``predict_proba(frame)``: the model, called once per dataset on the ``features`` columns
    (default: every column but the label); returns [N, C] class probabilities ([N] predictions for
    ``metric="mse"``). ``classes``: the label value of each probability column (default: 0..C−1 for
    integer labels, else the sorted label values). ``graph``: node → list of parent nodes;
    ``groups``: node → list of columns (default: a node is the column of that name). ``metric``: one
    of :func:`core.shift.metrics_available` ("accuracy", "log_loss", "brier", "auroc", "mse").
    ``n_boot``: bootstrap replicates for ``ci``. ``settings``/``options``: the method's knobs
    (:data:`core.shift.SETTINGS`). ``progress``/``cache``/``audit``: see
    :func:`explain_from_probabilities`.

    Returns a :class:`ShiftExplanation`: ``.total`` (target − source performance),
    ``.attributions`` (node → float, adding up to ``.total``), ``.ci`` (node → (lo, hi)),
    ``.diagnostics``, the per-sample ``.weights`` and ``.to_importances()``.
    """
    _check_frames(source, target, label)
    if not callable(predict_proba):
        raise ShiftError(f"predict_proba must be a function of a DataFrame, got {type(predict_proba).__name__}.")
    feats = [c for c in source.columns if c != label] if features is None else list(features)
    missing = [c for c in feats if c not in source.columns]
    if missing:
        raise ShiftError(f"features names column(s) {', '.join(map(repr, missing))} that are not in the data.")
    if label in feats:
        raise ShiftError(f"The label '{label}' cannot also be a feature of the model.")
    g = make_graph(graph, list(source.columns), groups)  # fail on bad input before running the model
    _check_missing(source, target, g.columns)
    ShiftSettings.make(settings, n_boot=n_boot, **options)
    probs_source = predict_proba(source[feats])
    probs_target = predict_proba(target[feats])
    return explain_from_probabilities(source, target, probs_source, probs_target, label=label, graph=graph,
                                      groups=groups, metric=metric, classes=classes, seed=seed,
                                      categorical=categorical, settings=settings, progress=progress, cache=cache,
                                      audit=audit, n_boot=n_boot, **options)


__all__ = ["ClassifierReport", "CoalitionTable", "MechanismReport", "ShiftDiagnostics", "ShiftExplanation", "Timings",
           "explain_from_probabilities", "explain_performance_change"]
