"""Density ratios from domain classifiers: cross-fitted, calibrated, clipped; per-mechanism weights.

A classifier h(x) = P(target | x) trained on source rows (label 0) against target rows (label 1)
gives the density ratio through its odds (Bayes' rule):

    p_T(x) / p_S(x) = h(x)/(1 − h(x)) · n_S/n_T.

Zhang et al. (ICML 2023, §4) turn these into the weight of each mechanism of the graph:

- a root v:            w_v(x) = odds(v) · n_S/n_T                       = p_T(v)/p_S(v);
- a node v with parents: w_v(x) = odds(v, pa) / odds(pa)                 = p_T(v | pa)/p_S(v | pa)
  (the priors cancel because both classifiers see the same rows).

Every row's odds come from classifiers that never saw it (**cross-fitting**: K folds stratified by
domain; fold k is scored by the classifier fitted on the other folds), so the weights carry no
in-sample optimism and every row of both datasets is used both to fit and to evaluate (the paper
splits the data in halves instead). The out-of-fold scores are **calibrated** (Platt or isotonic),
again cross-fitted, and the probabilities **clipped** to [ε, 1 − ε]. Where both classifiers of a
conditional hit the same clip (parents seen in one dataset only) its ratio is exactly 1: the
conditional there is not identified, and the weight does not pretend otherwise.

The diagnostics of each classifier (out-of-fold AUC, Brier score, expected calibration error and
the reliability curve) come from the same out-of-fold probabilities.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import njit
from threadpoolctl import threadpool_limits

from .base import ShiftError, ShiftSettings
from .metrics import weighted_auroc

MIN_ROWS_PER_FOLD = 5
#: a categorical column with more categories than this is split as ordered codes (gradient boosting's bin limit)
MAX_GBM_CATEGORIES = 254
#: logistic regression one-hot encodes up to this many categories (more would make a huge dense design);
#: beyond it the sorted category codes enter as one standardised number
MAX_ONE_HOT = 64


# ---------------------------------------------------------------------------- encoded columns
def is_categorical_series(s: pd.Series) -> bool:
    """Non-numeric and boolean columns are categories; numbers are numbers."""
    return not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)


@dataclass
class ColumnTable:
    """The graph's columns of source and target stacked (source rows first), each encoded once:
    float64 numbers for numeric columns and int64 codes (shared by both datasets) for categorical
    ones. ``fingerprints`` hash each column's raw values, for cache keys."""

    n_source: int
    n_target: int
    values: dict[str, np.ndarray]
    categorical: dict[str, bool]
    fingerprints: dict[str, str]
    n_categories: dict[str, int]

    @classmethod
    def build(cls, source: pd.DataFrame, target: pd.DataFrame, columns: Sequence[str],
              categorical: Sequence[str] = ()) -> ColumnTable:
        values, kinds, prints, ncat = {}, {}, {}, {}
        forced = set(categorical)
        for c in columns:
            s, t = source[c], target[c]
            for name, col in (("source", s), ("target", t)):
                if col.isna().any():
                    raise ShiftError(f"Column '{c}' has {int(col.isna().sum())} missing value(s) in the {name}; the "
                                     "domain classifiers need complete rows. Fill or drop them first.")
            h = hashlib.sha1()
            h.update(pd.util.hash_pandas_object(s, index=False).to_numpy().tobytes())
            h.update(b"|")
            h.update(pd.util.hash_pandas_object(t, index=False).to_numpy().tobytes())
            prints[c] = h.hexdigest()[:16]
            cat = c in forced or is_categorical_series(s) or is_categorical_series(t)
            if cat:
                pooled = pd.concat([s.astype(object), t.astype(object)], ignore_index=True)
                codes, uniques = pd.factorize(pooled, sort=True)
                values[c] = codes.astype(np.int64)
                ncat[c] = len(uniques)
            else:
                values[c] = np.concatenate([s.to_numpy(np.float64), t.to_numpy(np.float64)])
            kinds[c] = cat
        return cls(len(source), len(target), values, kinds, prints, ncat)

    @property
    def n(self) -> int:
        return self.n_source + self.n_target

    @property
    def domain(self) -> np.ndarray:
        """0 for source rows, 1 for target rows."""
        return np.r_[np.zeros(self.n_source, np.int64), np.ones(self.n_target, np.int64)]

    def fingerprint(self, columns: Sequence[str]) -> str:
        h = hashlib.sha1()
        for c in columns:
            h.update(f"{c}:{self.fingerprints[c]}:{int(self.categorical[c])};".encode())
        return h.hexdigest()[:16]

    def is_constant(self, columns: Sequence[str]) -> bool:
        return all(np.all(self.values[c] == self.values[c][0]) for c in columns)


# ---------------------------------------------------------------------------- classifiers
def _gbm_design(table: ColumnTable, columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    x = np.column_stack([table.values[c].astype(np.float64) for c in columns])
    is_cat = np.array([table.categorical[c] and table.n_categories[c] <= MAX_GBM_CATEGORIES for c in columns])
    return x, is_cat


def _logistic_design(table: ColumnTable, columns: Sequence[str]) -> np.ndarray:
    parts = []
    for c in columns:
        v = table.values[c]
        k = table.n_categories.get(c, 0)
        if table.categorical[c] and k <= MAX_ONE_HOT:
            if k > 1:
                parts.append(np.eye(k)[v])
        else:
            v = v.astype(np.float64)
            sd = v.std()
            parts.append(((v - v.mean()) / (sd if sd > 0 else 1.0))[:, None])
    return np.hstack(parts) if parts else np.zeros((table.n, 1))


def _make_classifier(settings: ShiftSettings, is_cat: np.ndarray | None, n_train: int, seed: int):
    params = dict(settings.classifier_params)
    if settings.classifier == "gbm":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            categorical_features=is_cat if is_cat is not None and is_cat.any() else None,
            early_stopping=n_train >= 400, validation_fraction=0.1, n_iter_no_change=10, random_state=seed, **params)
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=params.get("C", 1.0), max_iter=1000)


def assign_folds(n_source: int, n_target: int, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold of every row (source rows first), stratified by domain: each fold holds ~1/K of each."""
    out = np.empty(n_source + n_target, np.int64)
    for start, n in ((0, n_source), (n_source, n_target)):
        out[start + rng.permutation(n)] = np.arange(n) % folds
    return out


def _subsample(rows: np.ndarray, domain: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``limit`` of ``rows``, keeping each domain's share (so the prior odds stay n_T/n_S)."""
    if len(rows) <= limit:
        return rows
    keep = []
    for d in (0, 1):
        part = rows[domain[rows] == d]
        k = max(1, int(round(limit * len(part) / len(rows))))
        keep.append(np.sort(rng.choice(part, size=min(k, len(part)), replace=False)))
    return np.concatenate(keep)


# ---------------------------------------------------------------------------- calibration
@njit(cache=True, nogil=True)
def _logistic_pass(s, t, a, b):
    """One pass over the rows: the negative log-likelihood of σ(a·s + b) against targets t, its
    gradient (∂a, ∂b) and Hessian (aa, ab, bb). Fused so that a Newton step reads the scores once
    (NumPy needs about ten temporaries of n floats per step)."""
    nll = 0.0
    ga = 0.0
    gb = 0.0
    haa = 0.0
    hab = 0.0
    hbb = 0.0
    for i in range(s.size):
        z = a * s[i] + b
        if z > 0:
            e = np.exp(-z)
            nll += z + np.log1p(e) - t[i] * z
            p = 1.0 / (1.0 + e)
        else:
            e = np.exp(z)
            nll += np.log1p(e) - t[i] * z
            p = e / (1.0 + e)
        g = p - t[i]
        ga += g * s[i]
        gb += g
        h = p * (1.0 - p)
        haa += h * s[i] * s[i]
        hab += h * s[i]
        hbb += h
    return nll, ga, gb, haa, hab, hbb


def _platt_fit(score: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) maximising the likelihood of σ(a·s + b) with Platt's smoothed targets
    t⁺ = (N⁺+1)/(N⁺+2), t⁻ = 1/(N⁻+2), by Newton's method with step halving."""
    n_pos = float(y.sum())
    n_neg = float(len(y) - n_pos)
    t = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    scale = max(float(np.std(score)), 1e-12)
    s = np.ascontiguousarray((score - score.mean()) / scale, dtype=np.float64)
    # start from the identity map σ(score): a classifier's own log-odds are usually close, so Newton's
    # method needs a few steps from here
    a, b = scale, float(score.mean())
    cur, ga, gb, haa, hab, hbb = _logistic_pass(s, t, a, b)
    for _ in range(50):
        if abs(ga) + abs(gb) < 1e-9 * len(s):
            break
        haa, hbb = haa + 1e-9, hbb + 1e-9
        det = haa * hbb - hab * hab
        da, db = (hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det
        if 0.5 * (ga * da + gb * db) < 1e-10 * max(1.0, abs(cur)):  # Newton decrement: the optimum up to rounding
            break
        step, improved = 1.0, False
        for _ in range(30):
            new, nga, ngb, nhaa, nhab, nhbb = _logistic_pass(s, t, a - step * da, b - step * db)
            if new <= cur:
                improved = True
                break
            step /= 2
        if not improved:  # no descent along the Newton direction: at the optimum up to rounding
            break
        a, b = a - step * da, b - step * db
        done = cur - new < 1e-12 * max(1.0, abs(cur))
        cur, ga, gb, haa, hab, hbb = new, nga, ngb, nhaa, nhab, nhbb
        if done:
            break
    # back to the raw score's scale: a·(s − μ)/σ + b
    return a / scale, b - a * score.mean() / scale


def calibrate(raw: np.ndarray, domain: np.ndarray, folds: np.ndarray, method: str) -> np.ndarray:
    """P(target | row) from out-of-fold log-odds ``raw``; the map for fold k is fitted on the others."""
    if method == "none":
        return 1 / (1 + np.exp(-raw))
    out = np.empty_like(raw)
    for k in np.unique(folds):
        fit, apply = folds != k, folds == k
        if method == "platt":
            a, b = _platt_fit(raw[fit], domain[fit])
            out[apply] = 1 / (1 + np.exp(-(a * raw[apply] + b)))
        elif method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw[fit], domain[fit])
            out[apply] = iso.predict(raw[apply])
        else:
            raise ShiftError(f"Unknown calibration {method!r}; expected 'platt', 'isotonic' or 'none'.")
    return out


def reliability(prob: np.ndarray, y: np.ndarray, bins: int = 10) -> tuple[np.ndarray, float]:
    """Bins of the predicted probability at its quantiles (tied probabilities always share a bin):
    [bins', 3] = (mean predicted, observed rate, rows), and the expected calibration error
    Σ_b (n_b/n)·|mean predicted − observed rate|."""
    edges = np.unique(np.quantile(prob, np.linspace(0, 1, bins + 1)[1:-1]))
    which = np.searchsorted(edges, prob, side="right")
    rows = np.bincount(which, minlength=len(edges) + 1).astype(np.float64)
    pred = np.bincount(which, weights=prob, minlength=len(edges) + 1)
    obs = np.bincount(which, weights=y, minlength=len(edges) + 1)
    used = rows > 0
    table = np.column_stack([pred[used] / rows[used], obs[used] / rows[used], rows[used]])
    ece = float(np.sum(table[:, 2] * np.abs(table[:, 0] - table[:, 1])) / len(prob))
    return table, ece


# ---------------------------------------------------------------------------- one fitted ratio
@dataclass
class DomainFit:
    """A cross-fitted, calibrated domain classifier on ``columns``: the clipped log-odds of
    P(target | row) for every row (source rows first) and its diagnostics."""

    columns: tuple[str, ...]
    log_odds: np.ndarray  # float64 [n_source + n_target]
    n_source: int
    n_target: int
    auc: float
    brier: float
    ece: float
    reliability: np.ndarray  # [bins, 3]: mean predicted, observed target rate, rows
    share_clipped: float  # rows whose probability hit the clip
    fit_seconds: float  # time inside the classifiers' fit calls
    seconds: float  # everything: design, fits, predictions, calibration
    skipped: str | None = None  # why no classifier was needed (constant columns)

    @property
    def nbytes(self) -> int:
        return int(self.log_odds.nbytes + self.reliability.nbytes)

    @property
    def prior_log_odds(self) -> float:
        return float(np.log(self.n_target / self.n_source))


def fit_domain_classifier(table: ColumnTable, columns: Sequence[str], settings: ShiftSettings, seed: int,
                          on_fold: Callable[[int], None] | None = None) -> DomainFit:
    """Cross-fit, calibrate and clip a domain classifier on ``columns`` (see the module docstring)."""
    t_all = time.perf_counter()
    columns = tuple(columns)
    n_s, n_t, n = table.n_source, table.n_target, table.n
    domain = table.domain
    prior = np.log(n_t / n_s)
    eps = settings.clip_prob
    if table.is_constant(columns):
        # one value everywhere in both datasets: the ratio is exactly 1, nothing to learn
        lo = np.full(n, prior)
        rel, ece = reliability(np.full(n, n_t / n), domain.astype(np.float64))
        return DomainFit(columns, lo, n_s, n_t, 0.5, float(np.mean((n_t / n - domain) ** 2)), ece, rel, 0.0, 0.0,
                         time.perf_counter() - t_all, skipped="constant in both datasets")
    rng = np.random.default_rng(seed)
    folds = assign_folds(n_s, n_t, settings.folds, rng)
    if settings.classifier == "gbm":
        x, is_cat = _gbm_design(table, columns)
    else:
        x, is_cat = _logistic_design(table, columns), None
    raw = np.empty(n)
    fit_seconds = 0.0
    # OpenMP only (scikit-learn's gradient boosting): libgomp keeps the thread count per calling thread, so this
    # does not change other sessions' threads; BLAS stays as core.runtime set it at start-up
    with threadpool_limits(limits=settings.threads, user_api="openmp"):
        for k in range(settings.folds):
            train = _subsample(np.flatnonzero(folds != k), domain, settings.max_fit_rows, rng)
            clf = _make_classifier(settings, is_cat, len(train), seed + 7919 * k)
            t0 = time.perf_counter()
            clf.fit(x[train], domain[train])
            fit_seconds += time.perf_counter() - t0
            held = folds == k
            raw[held] = clf.decision_function(x[held])
            if on_fold is not None:
                on_fold(k)
    prob = calibrate(raw, domain, folds, settings.calibration)
    clipped = (prob < eps) | (prob > 1 - eps)
    prob = np.clip(prob, eps, 1 - eps)
    log_odds = np.log(prob) - np.log1p(-prob)
    rel, ece = reliability(prob, domain.astype(np.float64))
    return DomainFit(columns, log_odds, n_s, n_t, weighted_auroc(prob, domain), float(np.mean((prob - domain) ** 2)),
                     ece, rel, float(clipped.mean()), fit_seconds, time.perf_counter() - t_all)


def check_sample_sizes(n_source: int, n_target: int, folds: int) -> None:
    """Enough rows for ``folds``-fold cross-fitting of the domain classifiers."""
    need = max(MIN_ROWS_PER_FOLD * folds, 20)
    if n_source < need or n_target < need:
        raise ShiftError(f"Too few samples for the domain classifiers: {folds}-fold cross-fitting needs at least {need} "
                         f"rows in each dataset, got {n_source} in the source and {n_target} in the target. Use larger "
                         "samples (a few hundred rows each at least) or fewer folds.")


__all__ = ["ColumnTable", "DomainFit", "assign_folds", "calibrate", "check_sample_sizes", "fit_domain_classifier",
           "is_categorical_series", "reliability"]
