"""Performance metrics with sample weights: per-sample losses for the mean-type metrics and a
weighted AUROC.

Every metric but AUROC is a mean of per-sample values ℓᵢ, so its value under weights w is
Σ wᵢℓᵢ / Σ wᵢ (self-normalised) or Σ wᵢℓᵢ / n; :func:`per_sample_values` computes ℓ once and
every coalition of the Shapley game re-weights the same vector. AUROC weighs each (positive,
negative) pair by the product of its two weights:

    AUROC_w = Σ_{i∈pos, j∈neg} wᵢ wⱼ (1[sᵢ > sⱼ] + ½·1[sᵢ = sⱼ]) / (Σ_pos w · Σ_neg w),

which :func:`weighted_auroc` computes in one pass over the scores sorted once.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .base import METRICS, ShiftError

EPS_LOG = 1e-15


def check_probabilities(probs, n: int, where: str, task: str) -> np.ndarray:
    """``probs`` as float64: [N, C] probabilities for classification, [N] predictions for regression."""
    try:
        p = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ShiftError(f"{where} must be an array of numbers ({exc}).") from None
    if task == "regression":
        if p.ndim == 2 and p.shape[1] == 1:
            p = p[:, 0]
        if p.ndim != 1 or len(p) != n:
            raise ShiftError(f"{where} must hold one prediction per row, shape [{n}] or [{n}, 1]; got {p.shape}.")
    else:
        if p.ndim != 2 or len(p) != n:
            raise ShiftError(f"{where} must be class probabilities of shape [N, C] with N = {n} rows; got {p.shape}.")
        if p.shape[1] < 2:
            raise ShiftError(f"{where} has {p.shape[1]} column; a classifier's probabilities need one column per "
                             "class (at least 2). For a regression model use metric='mse'.")
    bad = ~np.isfinite(p)
    if bad.any():
        raise ShiftError(f"{where} contains {int(bad.reshape(len(p), -1).any(1).sum())} row(s) with NaN or inf.")
    if task != "regression":
        sums = p.sum(1)
        if (p < -1e-6).any() or np.abs(sums - 1).max() > 1e-3:
            raise ShiftError(f"{where} must be probabilities (non-negative, each row summing to 1); rows sum to "
                             f"{sums.min():.4g}..{sums.max():.4g}. Pass predict_proba, not logits or decision scores.")
    return p


def per_sample_values(metric: str, probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ℓᵢ of a mean-type metric (float64 [N]): the metric on the whole set is their mean.

    accuracy: 1[argmax pᵢ = yᵢ]; log_loss: −log max(p_{i,yᵢ}, 1e-15); brier: Σ_c (p_ic − 1[yᵢ = c])²
    (halved for two classes, as scikit-learn's ``brier_score_loss``); mse: (ŷᵢ − yᵢ)².
    """
    if metric == "mse":
        return (probs - labels) ** 2
    rows = np.arange(len(labels))
    if metric == "accuracy":
        return (probs.argmax(1) == labels).astype(np.float64)
    if metric == "log_loss":
        return -np.log(np.maximum(probs[rows, labels], EPS_LOG))
    if metric == "brier":
        sq = (probs ** 2).sum(1) - 2 * probs[rows, labels] + 1.0
        return sq / 2 if probs.shape[1] == 2 else sq
    raise ShiftError(f"{METRICS.spec(metric).name} is not a mean of per-sample values.")


@njit(cache=True, nogil=True)
def _auroc_sorted(scores, positive, weights):
    """Weighted AUROC over samples sorted by ascending score: ties share half the credit."""
    n = scores.size
    neg_below = 0.0
    pos_total = 0.0
    neg_total = 0.0
    area = 0.0
    i = 0
    while i < n:
        v = scores[i]
        pos_tie = 0.0
        neg_tie = 0.0
        while i < n and scores[i] == v:
            if positive[i]:
                pos_tie += weights[i]
            else:
                neg_tie += weights[i]
            i += 1
        area += pos_tie * (neg_below + 0.5 * neg_tie)
        neg_below += neg_tie
        pos_total += pos_tie
        neg_total += neg_tie
    if pos_total <= 0.0 or neg_total <= 0.0:
        return np.nan
    return area / (pos_total * neg_total)


class SortedScores:
    """Scores sorted once, so that many weightings of the same samples each cost one linear pass."""

    def __init__(self, scores: np.ndarray, labels: np.ndarray):
        self.order = np.argsort(scores, kind="stable")
        self.scores = np.ascontiguousarray(scores[self.order], dtype=np.float64)
        self.positive = np.ascontiguousarray(labels[self.order] == 1)

    def auroc(self, weights: np.ndarray) -> float:
        return float(_auroc_sorted(self.scores, self.positive, np.ascontiguousarray(weights[self.order], np.float64)))


def weighted_auroc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    """AUROC of ``scores`` for the positive class 1 of ``labels`` (0/1), each pair weighted by wᵢwⱼ."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels)
    w = np.ones(len(scores)) if weights is None else np.asarray(weights, np.float64)
    return SortedScores(scores, labels).auroc(w)


def metric_value(metric: str, probs: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None,
                 self_normalise: bool = True) -> float:
    """The metric on a whole set under ``weights`` (None: unweighted)."""
    if metric == "auroc":
        return weighted_auroc(probs[:, 1], labels, weights)
    values = per_sample_values(metric, probs, labels)
    if weights is None:
        return float(values.mean())
    w = np.asarray(weights, np.float64)
    return float((w * values).sum() / (w.sum() if self_normalise else len(w)))


__all__ = ["SortedScores", "check_probabilities", "metric_value", "per_sample_values", "weighted_auroc"]
