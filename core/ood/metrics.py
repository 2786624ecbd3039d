"""OOD metrics from one sort: AUROC, AUPR-In, AUPR-Out, FPR@95 and the ROC curve.

Scores follow the detectors' orientation: higher = more in-distribution.

Conventions (``convention=``):
- ``"ood-positive"`` (default; OpenOOD, pytorch-ood): OOD is the positive class, ranked by
  s = −score. FPR@95 is the share of ID samples flagged as OOD at the first threshold (walking
  from the most OOD-like score) where at least 95% of the OOD samples are caught.
- ``"id-positive"`` (ViM/KNN papers): the threshold keeps at least 95% of the ID samples (the
  highest such threshold), and FPR@95 is the share of OOD samples accepted as ID.

AUROC = P(s_ood > s_id) + ½·P(tie) and both average precisions are the same under either
convention: AUPR-In treats ID as positive (ranked by score), AUPR-Out treats OOD as positive
(ranked by −score); both equal scikit-learn's ``average_precision_score``. Tied scores always form
one ROC/PR point and cross a threshold together. All four come from one merge of the two sorted
samples in a numba kernel (:mod:`core.kernels.ranking`).
"""
from __future__ import annotations

import numpy as np

from core.kernels.ranking import merge_sorted_scores

from .base import OODError

CONVENTIONS = ("ood-positive", "id-positive")


def _prepare(name: str, scores) -> np.ndarray:
    try:
        x = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise OODError(f"{name} must be an array of numbers ({exc}).") from None
    if x.ndim != 1:
        x = x.reshape(-1) if x.ndim == 2 and 1 in x.shape else x
    if x.ndim != 1:
        raise OODError(f"{name} must be a 1-D array of scores, got shape {x.shape}.")
    if x.size == 0:
        raise OODError(f"{name} is empty; metrics need at least one ID and one OOD score.")
    bad = ~np.isfinite(x)
    if bad.any():
        raise OODError(f"{name} contains {int(bad.sum())} NaN/inf value(s) out of {x.size}; scores must be finite.")
    return np.sort(x)  # quicksort is fine: equal values are interchangeable, so stability is moot


def _check(convention: str, level: float) -> None:
    if convention not in CONVENTIONS:
        raise OODError(f"convention must be one of {', '.join(map(repr, CONVENTIONS))}, got {convention!r}.")
    if not (0.0 < float(level) <= 1.0):
        raise OODError(f"tpr_level must be in (0, 1], got {level!r}.")


def metrics(score_id, score_ood, convention: str = "ood-positive", tpr_level: float = 0.95) -> dict[str, float]:
    """AUROC, AUPR-In, AUPR-Out and FPR@95 of scores where higher = more in-distribution.

    Returns ``{"auroc", "aupr_in", "aupr_out", "fpr95", "threshold"}``. ``fpr95`` is the FPR at
    ``tpr_level`` (0.95 unless changed) under ``convention`` (see the module docstring);
    ``threshold`` is the score at that operating point: with "ood-positive" a sample is flagged as
    OOD when score <= threshold, with "id-positive" it is accepted as ID when score >= threshold.
    """
    _check(convention, tpr_level)
    s_id = _prepare("score_id", score_id)
    s_ood = _prepare("score_ood", score_ood)
    r, _ = merge_sorted_scores(s_id, s_ood, tpr_level, curve=False)
    if convention == "ood-positive":
        fpr, thr = r.fpr_ood_positive, r.threshold_ood_positive
    else:
        fpr, thr = r.fpr_id_positive, r.threshold_id_positive
    return {"auroc": r.auroc, "aupr_in": r.aupr_in, "aupr_out": r.aupr_out, "fpr95": fpr, "threshold": thr}


def roc_curve(score_id, score_ood, convention: str = "ood-positive",
              max_points: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve ``(fpr, tpr, thresholds)``, one point per distinct score plus the origin.

    "ood-positive": point i flags ``score <= thresholds[i]`` as OOD; tpr = share of OOD flagged,
    fpr = share of ID flagged; thresholds ascend from −inf. "id-positive": point i accepts
    ``score >= thresholds[i]`` as ID; tpr = share of ID accepted, fpr = share of OOD accepted;
    thresholds descend from +inf. Both start at (0, 0) and end at (1, 1). ``max_points`` thins
    the curve for plotting (evenly spaced points, always keeping the first and last).
    """
    _check(convention, 0.95)
    s_id = _prepare("score_id", score_id)
    s_ood = _prepare("score_ood", score_ood)
    _, (value, ood_le, id_le) = merge_sorted_scores(s_id, s_ood, 0.95, curve=True)
    n_id, n_ood = s_id.size, s_ood.size
    if convention == "ood-positive":
        thr = np.concatenate([[-np.inf], value])
        tpr = np.concatenate([[0.0], ood_le / n_ood])
        fpr = np.concatenate([[0.0], id_le / n_id])
    else:
        # accepting score >= v keeps everything not strictly below v; walk v from the top
        id_below = np.concatenate([[0], id_le[:-1]])
        ood_below = np.concatenate([[0], ood_le[:-1]])
        thr = np.concatenate([[np.inf], value[::-1]])
        tpr = np.concatenate([[0.0], (n_id - id_below[::-1]) / n_id])
        fpr = np.concatenate([[0.0], (n_ood - ood_below[::-1]) / n_ood])
    if max_points is not None and len(thr) > max_points:
        if max_points < 2:
            raise OODError(f"max_points must be at least 2, got {max_points}.")
        keep = np.unique(np.linspace(0, len(thr) - 1, int(max_points)).round().astype(np.int64))
        fpr, tpr, thr = fpr[keep], tpr[keep], thr[keep]
    return fpr, tpr, thr
