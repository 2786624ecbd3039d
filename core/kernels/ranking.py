"""Sort-based ranking metrics in one pass: AUROC, both average precisions, FPR at a recall level, ROC.

The two score samples are sorted separately (NumPy's SIMD sort) and then merged in a single
numba pass. Merging two sorted runs is the last step of a merge sort, so this is one stable
sort of the pooled scores, done without an argsort or a label array. While merging, runs of
equal scores are consumed as one group from both sides, so tied scores always form a single
ROC/PR point and cross any threshold together.

Conventions inside the kernel: scores are "higher = more in-distribution". Walking the merged
order from the lowest score upwards, ``ood_le`` and ``id_le`` count the OOD and ID samples at
or below the current score, i.e. the samples a threshold at that score flags as OOD.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit


class RankingSummary(NamedTuple):
    """Scalar results of one merge pass (see :func:`merge_sorted_scores`)."""

    auroc: float  #: P(score_ood < score_id) + ½·P(tie)
    aupr_in: float  #: average precision, ID positive, ranked by score (descending)
    aupr_out: float  #: average precision, OOD positive, ranked by -score (descending)
    fpr_ood_positive: float  #: share of ID flagged at the first threshold catching ≥ level of OOD
    threshold_ood_positive: float  #: that threshold: flag as OOD when score <= threshold
    fpr_id_positive: float  #: share of OOD accepted at the highest threshold keeping ≥ level of ID
    threshold_id_positive: float  #: that threshold: accept as ID when score >= threshold
    n_groups: int  #: number of distinct score values (ROC points minus the origin)


@njit(cache=True, nogil=True)
def _merge_pass(id_sorted, ood_sorted, level, curve_value, curve_ood_le, curve_id_le):
    n_id = id_sorted.size
    n_ood = ood_sorted.size
    store = curve_value.size > 0
    i = 0
    j = 0
    ood_le = 0  # OOD samples with score <= current value
    id_le = 0  # ID samples with score <= current value
    auc = 0.0
    ap_in = 0.0
    ap_out = 0.0
    found_ood = False
    fpr_o = np.nan
    thr_o = np.nan
    fpr_i = np.nan
    thr_i = np.nan
    k = 0
    while i < n_id or j < n_ood:
        if j >= n_ood:
            v = id_sorted[i]
        elif i >= n_id:
            v = ood_sorted[j]
        else:
            v = min(id_sorted[i], ood_sorted[j])
        a = 0  # OOD samples tied at v
        while j < n_ood and ood_sorted[j] == v:
            j += 1
            a += 1
        b = 0  # ID samples tied at v
        while i < n_id and id_sorted[i] == v:
            i += 1
            b += 1
        ood_below = ood_le
        id_below = id_le
        ood_le += a
        id_le += b
        # ID/OOD accepted by "score >= v" (the id-positive view of the same threshold)
        id_acc = n_id - id_below
        ood_acc = n_ood - ood_below
        if b > 0:
            # each ID sample at v beats the OOD strictly below and half-ties the OOD at v
            auc += b * (ood_below + 0.5 * a)
            ap_in += b * (id_acc / (id_acc + ood_acc))
        if a > 0:
            ap_out += a * (ood_le / (ood_le + id_le))
        if not found_ood and ood_le / n_ood >= level:
            found_ood = True
            fpr_o = id_le / n_id
            thr_o = v
        if id_acc / n_id >= level:  # monotone in v: the last hit is the highest threshold
            fpr_i = ood_acc / n_ood
            thr_i = v
        if store:
            curve_value[k] = v
            curve_ood_le[k] = ood_le
            curve_id_le[k] = id_le
        k += 1
    return (auc / (n_id * n_ood), ap_in / n_id, ap_out / n_ood, fpr_o, thr_o, fpr_i, thr_i, k)


def merge_sorted_scores(id_sorted: np.ndarray, ood_sorted: np.ndarray, level: float = 0.95,
                        curve: bool = False) -> tuple[RankingSummary, tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
    """Merge two ascending float64 score arrays once and return every metric.

    Inputs must be non-empty, finite, float64, C-contiguous and sorted ascending; the caller
    (``core.ood.metrics``) validates and sorts. With ``curve=True`` also returns, per distinct
    score value ``v`` (ascending), ``(v, #OOD <= v, #ID <= v)``.
    """
    if curve:
        cap = id_sorted.size + ood_sorted.size
        value = np.empty(cap, np.float64)
        ood_le = np.empty(cap, np.int64)
        id_le = np.empty(cap, np.int64)
    else:
        value = np.empty(0, np.float64)
        ood_le = np.empty(0, np.int64)
        id_le = np.empty(0, np.int64)
    out = _merge_pass(id_sorted, ood_sorted, float(level), value, ood_le, id_le)
    summary = RankingSummary(*(float(x) for x in out[:7]), int(out[7]))
    if not curve:
        return summary, None
    k = summary.n_groups
    return summary, (value[:k], ood_le[:k], id_le[:k])
