"""Activation shaping (ASH-P/-B/-S) fused with the linear head, and SCALE's top-k sums, one pass per row.

For each row the k-th largest value is found by quickselect, usually among only the values above a
threshold guess taken from a sample of rows (else over the whole row); the k kept
units are the values above it plus, in column order, enough of the values equal to it (ties are
broken by the lower column index), and only those units' columns of the head are accumulated, in
float64. No N×D mask, shaped copy or sparse matrix is built.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

MODES = {"ash-p": 0, "ash-b": 1, "ash-s": 2}


@njit(cache=True)
def _kth_largest(buf, n, k):
    """The k-th largest of buf[:n] (1 ≤ k ≤ n) by in-place quickselect (Hoare partition, median of three)."""
    lo, hi = 0, n - 1
    target = k - 1
    while lo < hi:
        mid = (lo + hi) >> 1
        a, b, c = buf[lo], buf[mid], buf[hi]
        if a < b:
            piv = b if b < c else (c if a < c else a)
        else:
            piv = a if a < c else (c if b < c else b)
        i, j = lo, hi
        while i <= j:
            while buf[i] > piv:
                i += 1
            while buf[j] < piv:
                j -= 1
            if i <= j:
                tmp = buf[i]
                buf[i] = buf[j]
                buf[j] = tmp
                i += 1
                j -= 1
        if target <= j:
            hi = j
        elif target >= i:
            lo = i
        else:
            return buf[target]
    return buf[lo]


@njit(cache=True, fastmath={"reassoc", "contract"})
def _row_kth_largest(row, buf, k, guess):
    """(t, s1): the k-th largest value of ``row`` and the row's sum (``buf`` holds ≥ D floats).

    The values ≥ ``guess`` are gathered without a branch (every value is written, the count grows
    only for those kept), so a badly predicted comparison costs nothing; t is selected among them
    when there are at least k, else over the whole row. Selection is exact either way."""
    d = row.shape[0]
    s1 = 0.0
    cnt = 0
    for j in range(d):
        v = np.float64(row[j])
        s1 += v
        buf[cnt] = v
        cnt += v >= guess
    if cnt >= k:
        return _kth_largest(buf, cnt, k), s1
    for j in range(d):
        buf[j] = row[j]
    return _kth_largest(buf, d, k), s1


@njit(cache=True, parallel=True, fastmath={"reassoc", "contract"})
def _top_k_sums(z, k, guess, s1_out, s2_out):
    n, d = z.shape
    blocks = min(n, 64)
    step = (n + blocks - 1) // blocks
    for blk in prange(blocks):
        buf = np.empty(d, np.float64)
        for i in range(blk * step, min(n, (blk + 1) * step)):
            row = z[i]
            t, s1 = _row_kth_largest(row, buf, k, guess)
            above = 0
            s2 = 0.0
            for j in range(d):
                v = np.float64(row[j])
                above += v > t
                s2 += v if v > t else 0.0
            s1_out[i] = s1
            s2_out[i] = s2 + (k - above) * t  # the values tied with t that complete the k kept ones


@njit(cache=True, parallel=True, fastmath=False)
def _shaped_logits(z, wt, k, mode, max_log_scale, guess, out):
    n, d = z.shape
    c = wt.shape[1]
    blocks = min(n, 64)
    step = (n + blocks - 1) // blocks
    for blk in prange(blocks):
        buf = np.empty(d, np.float64)
        acc = np.empty(c, np.float64)
        for i in range(blk * step, min(n, (blk + 1) * step)):
            row = z[i]
            t, s1 = _row_kth_largest(row, buf, k, guess)
            above = 0
            for j in range(d):
                above += row[j] > t
            ties = k - above
            for q in range(c):
                acc[q] = 0.0
            s2 = 0.0
            for j in range(d):
                v = np.float64(row[j])
                if v > t:
                    keep = True
                elif v == t and ties > 0:
                    keep = True
                    ties -= 1
                else:
                    keep = False
                if keep:
                    s2 += v
                    a = 1.0 if mode == 1 else v
                    for q in range(c):
                        acc[q] += a * wt[j, q]
            if mode == 1:  # ASH-B: every kept unit becomes s1/k
                scale = s1 / k
            elif mode == 2:  # ASH-S: the pruned features times exp(s1/s2)
                r = s1 / s2 if s2 != 0.0 else 1.0
                r = min(max(r, -max_log_scale), max_log_scale)
                scale = np.exp(r)
            else:
                scale = 1.0
            for q in range(c):
                out[i, q] = scale * acc[q]


def _threshold_guess(z: np.ndarray, k: int) -> float:
    """A value below most rows' k-th largest (the 10th percentile of the 2k-th largest values of up to
    256 sample rows), so the kernels usually select among about 2k values instead of the whole row."""
    n, d = z.shape
    k2 = min(d, 2 * k)
    if k2 < d and n > 0:
        sample = np.asarray(z[np.linspace(0, n - 1, min(n, 256)).astype(np.int64)], np.float64)
        return float(np.percentile(np.partition(sample, d - k2, axis=1)[:, d - k2], 10))
    return -np.inf


def _rows(z: np.ndarray, k: int) -> np.ndarray:
    z = np.ascontiguousarray(z)
    if z.dtype not in (np.float32, np.float64):
        z = z.astype(np.float64)
    if z.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {z.shape}")
    if not 1 <= k <= z.shape[1]:
        raise ValueError(f"k must be in 1..{z.shape[1]}, got {k}")
    return z


def top_k_sums(z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(s1, s2) per row of z [N, D]: the sum of all values and of the k largest (float64), in one
    parallel pass without sorting the rows (SCALE's exp(s1/s2))."""
    z = _rows(z, k)
    s1 = np.empty(len(z), np.float64)
    s2 = np.empty(len(z), np.float64)
    if len(z):
        _top_k_sums(z, int(k), _threshold_guess(z, k), s1, s2)
    return s1, s2


def shaped_logits(z: np.ndarray, weight: np.ndarray, k: int, method: str, max_log_scale: float = 50.0) -> np.ndarray:
    """W·shape(z) (no bias) as float64 [N, C] for ``method`` in ash-p / ash-b / ash-s, keeping the k
    largest units of every row of z [N, D] (float32 or float64)."""
    z = _rows(z, k)
    wt = np.ascontiguousarray(np.asarray(weight, np.float64).T)
    out = np.empty((len(z), wt.shape[1]), np.float64)
    if len(z) == 0:
        return out
    _shaped_logits(z, wt, int(k), MODES[method], float(max_log_scale), _threshold_guess(z, k), out)
    return out
