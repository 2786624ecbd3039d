"""Drift tests for audits: per-column tests, a classifier two-sample test, and label-shift estimates.

Per column (:func:`drift_table`), with Evidently's sample-size-aware defaults
(evidentlyai/evidently, "data drift", stattest auto-selection):

- a column is *categorical* when it is not numeric, or numeric with at most 5 distinct values;
  *binary* when it has at most 2;
- up to 1000 source ("reference") rows: two-sample Kolmogorov–Smirnov for numeric columns, χ² for
  categorical ones, a two-proportion Z-test for binary ones, each drifting at p < α = 0.05;
- more rows: the Wasserstein distance divided by the source's standard deviation (floored at
  0.001) for numeric columns, the Jensen–Shannon distance (natural log, √ of the divergence) of the
  category frequencies for categorical ones, each drifting at ≥ 0.1.

Every row of the table carries both kinds of statistic (the tests and the distances), so the page
can sort by an effect size whatever the sample size. The χ² test here is the 2×k test of
homogeneity (both datasets are samples); Evidently tests the target counts against the source's
proportions taken as exact, which divides by zero for a category the source lacks.

:func:`c2st`: the out-of-fold AUC of a domain classifier on all columns (Lopez-Paz & Oquab,
"Revisiting classifier two-sample tests", ICLR 2017); 2·AUC − 1 is the drift score and the
Mann–Whitney normal approximation gives a p-value.

:func:`label_shift`: the target's class prior under the label-shift assumption (P(x | y) fixed):
BBSE (Lipton, Wang & Smola, ICML 2018) solves C·w = μ̂ with C[i, j] = P_S(ŷ = i, y = j) and μ̂[i] =
P_T(ŷ = i), so q_T(y) = w_y·p_S(y); EM (Saerens, Latinne & Decaestecker, Neural Computation 2002)
alternates the re-weighted posteriors p(y | x)·q(y)/p_S(y) and their mean as the new prior.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from .base import ShiftError

SMALL_SAMPLE = 1000
ALPHA = 0.05
WASSERSTEIN_THRESHOLD = 0.1
JS_THRESHOLD = 0.1
MAX_UNIQUE_CATEGORICAL = 5

DRIFT_COLUMNS = ["column", "kind", "test", "statistic", "p_value", "effect", "effect_name", "threshold", "drifted",
                 "ks", "ks_p_value", "wasserstein_norm", "chi2", "chi2_p_value", "jensen_shannon", "z", "z_p_value",
                 "source_summary", "target_summary", "n_source", "n_target"]


def column_kind(source: pd.Series, target: pd.Series) -> str:
    """"numeric", "categorical" or "binary" by Evidently's rule (numbers with ≤ 5 distinct values are
    categorical, ≤ 2 binary)."""
    numeric = pd.api.types.is_numeric_dtype(source) and pd.api.types.is_numeric_dtype(target) and not \
        pd.api.types.is_bool_dtype(source)
    n_unique = pd.concat([source.astype(object), target.astype(object)], ignore_index=True).nunique(dropna=True)
    if numeric and n_unique > MAX_UNIQUE_CATEGORICAL:
        return "numeric"
    return "binary" if n_unique <= 2 else "categorical"


def _frequencies(s: pd.Series, t: pd.Series) -> tuple[np.ndarray, np.ndarray, list]:
    keys = sorted(set(s.dropna().tolist()) | set(t.dropna().tolist()), key=lambda v: (str(type(v)), v))
    cs, ct = s.value_counts(), t.value_counts()
    return (np.array([cs.get(k, 0) for k in keys], np.float64), np.array([ct.get(k, 0) for k in keys], np.float64), keys)


def _categorical_stats(s: pd.Series, t: pd.Series) -> dict:
    fs, ft, keys = _frequencies(s, t)
    out = {"chi2": np.nan, "chi2_p_value": np.nan, "jensen_shannon": 0.0, "z": np.nan, "z_p_value": np.nan}
    if len(keys) >= 2:
        table = np.vstack([fs, ft])
        table = table[:, table.sum(0) > 0]
        chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
        out["chi2"], out["chi2_p_value"] = float(chi2), float(p)
        out["jensen_shannon"] = float(distance.jensenshannon(fs / fs.sum(), ft / ft.sum()))
    else:
        out["chi2_p_value"] = 1.0
    if len(keys) == 2:
        n1, n2 = fs.sum(), ft.sum()
        p1, p2 = fs[1] / n1, ft[1] / n2
        pooled = (fs[1] + ft[1]) / (n1 + n2)
        se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        z = 0.0 if se == 0 else (p2 - p1) / se
        out["z"], out["z_p_value"] = float(z), float(2 * stats.norm.sf(abs(z)))
    elif len(keys) < 2:
        out["z"], out["z_p_value"] = 0.0, 1.0
    top = lambda x: ", ".join(f"{k}: {v / max(x.sum(), 1):.0%}" for k, v in  # noqa: E731
                              sorted(zip(keys, x), key=lambda kv: -kv[1])[:3])
    out["source_summary"], out["target_summary"] = top(fs), top(ft)
    return out


def _numeric_stats(s: np.ndarray, t: np.ndarray) -> dict:
    ks = stats.ks_2samp(s, t)
    norm = max(float(np.std(s)), 0.001)
    return {"ks": float(ks.statistic), "ks_p_value": float(ks.pvalue),
            "wasserstein_norm": float(stats.wasserstein_distance(s, t) / norm),
            "source_summary": f"mean {np.mean(s):.4g}, sd {np.std(s):.3g}",
            "target_summary": f"mean {np.mean(t):.4g}, sd {np.std(t):.3g}"}


def drift_table(source: pd.DataFrame, target: pd.DataFrame, columns: Sequence[str] | None = None,
                categorical: Sequence[str] = (), *, alpha: float = ALPHA, small_sample: int = SMALL_SAMPLE,
                wasserstein_threshold: float = WASSERSTEIN_THRESHOLD, js_threshold: float = JS_THRESHOLD) -> pd.DataFrame:
    """One row per column (see the module docstring): the default test for its kind and the source's
    size (``test``, ``statistic``, ``p_value``, ``drifted``), an effect size (normed Wasserstein
    distance or Jensen–Shannon distance, ``effect``), every statistic, and short summaries; sorted
    by ``effect``, largest first. ``categorical`` forces columns to be treated as categories."""
    columns = list(source.columns if columns is None else columns)
    missing = [c for c in columns if c not in source.columns or c not in target.columns]
    if missing:
        raise ShiftError(f"drift_table: column(s) {', '.join(map(repr, missing))} are not in both datasets.")
    if len(source) == 0 or len(target) == 0:
        raise ShiftError("drift_table needs rows in both datasets.")
    forced = set(categorical)
    small = len(source) <= small_sample
    rows = []
    for c in columns:
        s, t = source[c].dropna(), target[c].dropna()
        kind = column_kind(s, t)
        if c in forced and kind == "numeric":
            kind = "categorical"
        row = {k: np.nan for k in DRIFT_COLUMNS}
        row.update(column=c, kind=kind, n_source=len(s), n_target=len(t))
        if kind == "numeric":
            row.update(_numeric_stats(s.to_numpy(np.float64), t.to_numpy(np.float64)))
            row.update(effect=row["wasserstein_norm"], effect_name="Wasserstein (normed)", )
            if small:
                row.update(test="KS", statistic=row["ks"], p_value=row["ks_p_value"], threshold=alpha,
                           drifted=row["ks_p_value"] < alpha)
            else:
                row.update(test="Wasserstein (normed)", statistic=row["wasserstein_norm"], p_value=np.nan,
                           threshold=wasserstein_threshold, drifted=row["wasserstein_norm"] >= wasserstein_threshold)
        else:
            row.update(_categorical_stats(s, t))
            row.update(effect=row["jensen_shannon"], effect_name="Jensen-Shannon")
            if small and kind == "binary":
                row.update(test="Z-test", statistic=row["z"], p_value=row["z_p_value"], threshold=alpha,
                           drifted=row["z_p_value"] < alpha)
            elif small:
                row.update(test="chi²", statistic=row["chi2"], p_value=row["chi2_p_value"], threshold=alpha,
                           drifted=row["chi2_p_value"] < alpha)
            else:
                row.update(test="Jensen-Shannon", statistic=row["jensen_shannon"], p_value=np.nan,
                           threshold=js_threshold, drifted=row["jensen_shannon"] >= js_threshold)
        row["drifted"] = bool(row["drifted"])
        rows.append(row)
    table = pd.DataFrame(rows, columns=DRIFT_COLUMNS)
    return table.sort_values("effect", ascending=False, kind="stable").reset_index(drop=True)


def dataset_drift(table: pd.DataFrame, share: float = 0.5) -> bool:
    """Evidently's dataset-level rule: drift when at least ``share`` of the columns drift."""
    return bool(len(table) and table["drifted"].mean() >= share)


@dataclass(frozen=True)
class C2STResult:
    """Classifier two-sample test: out-of-fold ``auc`` of a domain classifier on ``columns``,
    ``score`` = 2·AUC − 1 (0: indistinguishable, 1: separable) and the Mann–Whitney ``p_value``."""

    auc: float
    score: float
    p_value: float
    n_source: int
    n_target: int
    columns: tuple[str, ...]


def c2st_from_auc(auc: float, n_source: int, n_target: int, columns: Sequence[str]) -> C2STResult:
    """The C2ST result of an out-of-fold AUC (one-sided: AUC > ½ means the datasets differ), with the
    normal approximation of the Mann–Whitney U statistic under the null of no difference."""
    mu = 0.5
    sigma = np.sqrt((n_source + n_target + 1) / (12.0 * n_source * n_target))
    p = float(stats.norm.sf((auc - mu) / sigma))
    return C2STResult(float(auc), float(2 * auc - 1), p, int(n_source), int(n_target), tuple(columns))


def c2st(source: pd.DataFrame, target: pd.DataFrame, columns: Sequence[str] | None = None, *, seed: int = 0,
         categorical: Sequence[str] = (), **settings) -> C2STResult:
    """Fit a cross-fitted domain classifier on ``columns`` (default: all shared columns) and return its
    C2ST result. ``settings``: the classifier settings of :class:`~core.shift.base.ShiftSettings`."""
    from .base import ShiftSettings
    from .weights import ColumnTable, check_sample_sizes, fit_domain_classifier

    cols = [c for c in (source.columns if columns is None else columns)]
    missing = [c for c in cols if c not in source.columns or c not in target.columns]
    if missing:
        raise ShiftError(f"c2st: column(s) {', '.join(map(repr, missing))} are not in both datasets.")
    s = ShiftSettings.make(**settings)
    check_sample_sizes(len(source), len(target), s.folds)
    table = ColumnTable.build(source, target, cols, categorical)
    fit = fit_domain_classifier(table, cols, s, seed)
    return c2st_from_auc(fit.auc, len(source), len(target), cols)


@dataclass(frozen=True)
class LabelShiftEstimate:
    """The target's class prior estimated from unlabelled target predictions (label-shift assumption).

    ``source_prior`` p_S(y), ``target_prior`` the estimate q̂_T(y), ``weights`` q̂_T(y)/p_S(y),
    ``observed_target_prior`` the target's true prior when its labels are known (else None),
    ``error`` = ½·Σ|q̂ − q| (total variation) in that case, ``condition`` the condition number of
    BBSE's confusion matrix (large: the estimate is unstable), ``iterations`` of EM."""

    method: str
    source_prior: np.ndarray
    target_prior: np.ndarray
    weights: np.ndarray
    observed_target_prior: np.ndarray | None
    error: float | None
    condition: float | None = None
    iterations: int | None = None


def label_shift(probs_source: np.ndarray, labels_source: np.ndarray, probs_target: np.ndarray,
                method: str = "bbse", labels_target: np.ndarray | None = None, max_iter: int = 1000,
                tol: float = 1e-8) -> LabelShiftEstimate:
    """Estimate the target's label prior (see the module docstring). ``labels_source`` are class
    indices 0..C−1 for the columns of the probabilities."""
    ps = np.asarray(probs_source, np.float64)
    pt = np.asarray(probs_target, np.float64)
    ys = np.asarray(labels_source, np.int64)
    c = ps.shape[1]
    if pt.ndim != 2 or pt.shape[1] != c:
        raise ShiftError(f"label_shift: source probabilities have {c} classes, target ones {pt.shape}.")
    prior_s = np.bincount(ys, minlength=c).astype(np.float64) / len(ys)
    cond, iters = None, None
    if method == "bbse":
        pred_s, pred_t = ps.argmax(1), pt.argmax(1)
        joint = np.zeros((c, c))
        np.add.at(joint, (pred_s, ys), 1.0)
        joint /= len(ys)
        mu = np.bincount(pred_t, minlength=c).astype(np.float64) / len(pred_t)
        present = prior_s > 0
        sub = joint[:, present]
        w_present = np.linalg.lstsq(sub, mu, rcond=None)[0]
        w = np.zeros(c)
        w[present] = np.clip(w_present, 0, None)
        q = w * prior_s
        cond = float(np.linalg.cond(sub)) if sub.size else None
    elif method == "em":
        q = prior_s.copy()
        safe = np.where(prior_s > 0, prior_s, 1.0)
        for iters in range(1, max_iter + 1):  # noqa: B007
            post = pt * np.where(prior_s > 0, q / safe, 0.0)
            post /= np.maximum(post.sum(1, keepdims=True), 1e-300)
            new = post.mean(0)
            done = np.abs(new - q).max() < tol
            q = new
            if done:
                break
    else:
        raise ShiftError(f"label_shift: method must be 'bbse' or 'em', got {method!r}.")
    q = q / q.sum() if q.sum() > 0 else np.full(c, 1.0 / c)
    weights = np.where(prior_s > 0, q / np.where(prior_s > 0, prior_s, 1.0), 0.0)
    observed, err = None, None
    if labels_target is not None:
        observed = np.bincount(np.asarray(labels_target, np.int64), minlength=c).astype(np.float64)
        observed /= observed.sum()
        err = float(0.5 * np.abs(q - observed).sum())
    return LabelShiftEstimate(method, prior_s, q, weights, observed, err, cond, iters)


__all__ = ["C2STResult", "DRIFT_COLUMNS", "LabelShiftEstimate", "c2st", "c2st_from_auc", "column_kind", "dataset_drift",
           "drift_table", "label_shift"]
