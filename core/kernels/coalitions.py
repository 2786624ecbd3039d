"""Coalition weights of the shift-attribution game: the products of per-mechanism weights over every
coalition of players, clipped, and the sums every coalition value needs.

A row's weight under coalition S is w_S = min(Π_{j∈S} w_j, c). For all 2^P coalitions at once,
:func:`subset_products` builds the products by dynamic programming over the bitmasks,
w_S = w_{S∖{j}}·w_j with j the lowest player of S, i.e. one multiplication per coalition and row
(P exponentials per row), where the plain route (exp of the [n, P]·[P, 2^P] matrix of log sums)
costs a P-term dot product and an exponential per coalition and row. For an arbitrary list of
coalitions (permutation sampling) :func:`mask_products` evaluates the products directly.

:func:`auroc_coalitions` computes the weighted AUROC of many coalitions (and bootstrap
replicates) in one pass each over the scores sorted once, building each row's weight on the fly.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def subset_products(logw, log_clip, out, raw_sums, n_clipped):
    """Every coalition's clipped weight for every row: ``out[i, S] = min(exp(Σ_{j∈S} logw[i, j]), e^log_clip)``
    for S = 0 .. 2^P − 1 (bit j = player j). Adds each coalition's unclipped weights to ``raw_sums[S]``
    and its clipped rows to ``n_clipped[S]``."""
    n, p = logw.shape
    k = 1 << p
    clip = np.exp(log_clip)
    w = np.empty(p)
    prod = np.empty(k)
    for i in range(n):
        for j in range(p):
            w[j] = np.exp(logw[i, j])
        prod[0] = 1.0
        out[i, 0] = 1.0 if clip >= 1.0 else clip
        raw_sums[0] += 1.0
        if clip < 1.0:
            n_clipped[0] += 1
        for s in range(1, k):
            low = s & (-s)
            j = 0
            while (low >> j) != 1:
                j += 1
            v = prod[s ^ low] * w[j]
            prod[s] = v
            raw_sums[s] += v
            if v > clip:
                out[i, s] = clip
                n_clipped[s] += 1
            else:
                out[i, s] = v


def subset_products_numpy(logw: np.ndarray, log_clip: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same as :func:`subset_products` with NumPy (the reference the kernel is tested and timed against)."""
    p = logw.shape[1]
    masks = np.arange(1 << p)
    member = ((masks[:, None] >> np.arange(p)) & 1).astype(np.float64)
    log_prod = logw @ member.T
    raw = np.exp(log_prod)
    return np.minimum(raw, np.exp(log_clip)), raw.sum(0), (log_prod > log_clip).sum(0)


def mask_products(logw: np.ndarray, masks: np.ndarray, log_clip: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clipped weights [n, len(masks)] of the listed coalitions, their unclipped sums and clipped counts."""
    p = logw.shape[1]
    member = ((np.asarray(masks, np.int64)[:, None] >> np.arange(p)) & 1).astype(np.float64)
    log_prod = logw @ member.T
    raw = np.exp(log_prod)
    return np.minimum(raw, np.exp(log_clip)), raw.sum(0), (log_prod > log_clip).sum(0)


@njit(cache=True, nogil=True)
def auroc_coalitions(scores, positive, logw, masks, log_clip, counts, out):
    """``out[r, m]``: weighted AUROC of the rows (sorted by ascending ``scores``) under coalition
    ``masks[m]``'s clipped weights times ``counts[r]`` (bootstrap multiplicities; a row of ones for
    the point estimate). Ties share half the credit; NaN when one class has no weight."""
    n, p = logw.shape
    clip = np.exp(log_clip)
    w = np.empty(n)
    for m in range(masks.size):
        mask = masks[m]
        for i in range(n):
            s = 0.0
            for j in range(p):
                if (mask >> j) & 1:
                    s += logw[i, j]
            v = np.exp(s)
            w[i] = v if v < clip else clip
        for r in range(counts.shape[0]):
            neg_below = 0.0
            pos_total = 0.0
            neg_total = 0.0
            area = 0.0
            i = 0
            while i < n:
                value = scores[i]
                pos_tie = 0.0
                neg_tie = 0.0
                while i < n and scores[i] == value:
                    u = w[i] * counts[r, i]
                    if positive[i]:
                        pos_tie += u
                    else:
                        neg_tie += u
                    i += 1
                area += pos_tie * (neg_below + 0.5 * neg_tie)
                neg_below += neg_tie
                pos_total += pos_tie
                neg_total += neg_tie
            out[r, m] = area / (pos_total * neg_total) if pos_total > 0.0 and neg_total > 0.0 else np.nan


__all__ = ["auroc_coalitions", "mask_products", "subset_products", "subset_products_numpy"]
