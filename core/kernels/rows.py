"""Row-wise reductions of float32 feature matrices with float64 accumulation, in one parallel pass.

NumPy and torch either accumulate a float32 matrix in float32 or first copy it to float64 (an
N×D temporary, which costs more than the arithmetic). These kernels read each float32 row once
and accumulate in float64.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True, fastmath={"reassoc", "contract"})
def _centred_sq_norms(x, center, out):
    n, d = x.shape
    for i in prange(n):
        acc = 0.0
        for j in range(d):
            v = np.float64(x[i, j]) - center[j]
            acc += v * v
        out[i] = acc


@njit(cache=True, parallel=True, fastmath=False)
def _column_sums(x, out_blocks):
    n, d = x.shape
    nb = out_blocks.shape[0]
    step = (n + nb - 1) // nb
    for b in prange(nb):
        lo = b * step
        hi = min(n, lo + step)
        for i in range(lo, hi):
            for j in range(d):
                out_blocks[b, j] += np.float64(x[i, j])


def centred_sq_norms(x: np.ndarray, center: np.ndarray) -> np.ndarray:
    """‖x_i − center‖² per row, float64 [N] (x float32 or float64 [N, D]; no N×D temporary)."""
    x = np.ascontiguousarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    center = np.ascontiguousarray(center, np.float64)
    out = np.empty(x.shape[0], np.float64)
    _centred_sq_norms(x, center, out)
    return out


def column_means(x: np.ndarray, blocks: int = 16) -> np.ndarray:
    """Column means of x [N, D] accumulated in float64 over row blocks (no float64 copy of x)."""
    x = np.ascontiguousarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    if len(x) == 0:
        return np.full(x.shape[1], np.nan)
    parts = np.zeros((max(1, min(blocks, len(x))), x.shape[1]), np.float64)
    _column_sums(x, parts)
    return parts.sum(0) / len(x)



@njit(cache=True, parallel=True)
def _centre_into(x, center, out):
    n, d = x.shape
    for i in prange(n):
        for j in range(d):
            out[i, j] = np.float64(x[i, j]) - center[j]


def centred_float64(x: np.ndarray, center: np.ndarray) -> np.ndarray:
    """x − center as a new float64 array, converted and centred in one parallel pass."""
    x = np.ascontiguousarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    out = np.empty(x.shape, np.float64)
    _centre_into(x, np.ascontiguousarray(center, np.float64), out)
    return out
