"""Per-row softmax statistics of a logit matrix in one pass, relative to the row maximum.

For row f (scaled by 1/T) with maximum m at column a, with d_c = f_c − m ≤ 0:

- ``s = Σ_{c≠a} exp(d_c)``: p_max = 1/(1 + s) and logsumexp f = m + log1p(s);
- ``r = Σ_c exp(d_c)·d_c``: Σ_c p_c log p_c = r/(1 + s) − log1p(s).

The exponentials are taken in the logits' own precision (float32 logits use ``expf``: each term is a
ratio ≤ 1 to the largest, so it keeps ~1e-7 relative precision however small it is) and summed in
float64. Nothing rounds to one: p_max and the entropy keep their ranking for margins where a float32
softmax has long saturated, and no N×C temporary is allocated.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

SCORES = {"msp": 0, "energy": 1, "neg_entropy": 2}


@njit(cache=True, parallel=True)
def _row_score(f, inv_t, mode, out):
    n, c = f.shape
    for i in prange(n):
        m = f[i, 0] * inv_t
        a = 0
        for j in range(1, c):
            v = f[i, j] * inv_t
            if v > m:
                m = v
                a = j
        s = 0.0
        r = 0.0
        for j in range(c):
            if j != a:
                dj = f[i, j] * inv_t - m
                e = math.exp(dj)
                s += e
                if mode == 2:
                    r += np.float64(e) * np.float64(dj)
        if mode == 0:
            out[i] = 1.0 / (1.0 + s)
        elif mode == 1:
            out[i] = np.float64(m) + math.log1p(s)
        else:
            out[i] = r / (1.0 + s) - math.log1p(s)


def row_softmax_score(logits: np.ndarray, score: str, temperature: float = 1.0) -> np.ndarray:
    """Per row of ``logits / temperature`` (float64 [N]): "msp" = 1/(1 + s), "energy" = m + log1p(s)
    (logsumexp; multiply by T for the tempered energy), "neg_entropy" = r/(1 + s) − log1p(s) = Σ p log p.
    See the module docstring for m, s, r."""
    f = np.ascontiguousarray(logits)
    if f.dtype not in (np.float32, np.float64):
        f = f.astype(np.float64)
    out = np.empty(f.shape[0])
    if len(out):
        _row_score(f, f.dtype.type(1.0 / temperature), SCORES[score], out)
    return out


@njit(cache=True, parallel=True)
def _tempered_moments(g, beta, mean_out, var_out):
    n, c = g.shape
    for i in prange(n):
        m = beta * g[i, 0]
        for j in range(1, c):
            v = beta * g[i, j]
            if v > m:
                m = v
        z = 0.0
        e1 = 0.0
        e2 = 0.0
        for j in range(c):
            w = np.float64(math.exp(beta * g[i, j] - m))
            gj = np.float64(g[i, j])
            z += w
            e1 += w * gj
            e2 += w * gj * gj
        mu = e1 / z
        mean_out[i] = mu
        var_out[i] = max(e2 / z - mu * mu, 0.0)


def tempered_moments(g: np.ndarray, beta: float) -> tuple[float, float]:
    """mean_i E_{p_i}[g_i] and mean_i Var_{p_i}[g_i] with p_i = softmax(β g_i) for g [N, C] in one pass per row.

    The exponentials run in g's precision (float32 g: ``expf``, ~1e-7 relative per weight), the moments
    are accumulated in float64. The label-shifted logits of temperature scaling keep E g and E g² small for
    the rows that matter, so Var = E g² − (E g)² loses nothing there (a confidently wrong row has a tiny
    variance whose absolute error, ~1e-16·g², is negligible in the mean)."""
    n = g.shape[0]
    mean, var = np.empty(n), np.empty(n)
    _tempered_moments(g, g.dtype.type(beta), mean, var)
    return float(mean.mean()), float(var.mean())
