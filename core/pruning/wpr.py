"""Weighted PageRank (WPR) on attention graphs, the importance score of Zero-TPrune.

Wang, Dedhia & Jha, "Zero-TPrune: Zero-Shot Token Pruning through Leveraging of the Attention
Graph in Pre-Trained Transformers", CVPR 2024 (arXiv 2305.17328).

A head's attention matrix A (rows: queries, columns: keys, every row sums to 1) is the adjacency
matrix of a directed graph in which token i sends weight A[i, j] to token j. A token is important
when important tokens attend to it, which is PageRank without damping:

    s⁽⁰⁾ = 1/N (uniform) or CLS-emphasised;   s⁽ᵗ⁺¹⁾[j] = Σᵢ A[i, j] · s⁽ᵗ⁾[i],   i.e. s ← Aᵀs.

A is row-stochastic, so Σⱼ s[j] stays 1. One iteration from the uniform start is the mean
attention a token receives; more iterations converge to the stationary distribution.

Heads are then aggregated: the mean over heads, or the root mean square (the paper's "emphasising
informative region", EIR: s(x) = sqrt(mean_h s_h(x)²), which lets a token that one head finds
important stand out), renormalised to sum 1. The variance-based head filter (VHF) leaves out
heads whose importance distribution is nearly flat (no information) or concentrated on very few
tokens (a sink). We measure a head's spread as the variance of N·s_h over its N tokens (the
squared coefficient of variation: 0 for a flat head, N−1 for a head that puts all importance on
one token), so the bounds do not depend on the number of tokens; a head is kept when its
variance lies in [v_min, v_max]. An image whose heads all fall outside keeps every head.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .base import PruningError

INITS = ("uniform", "cls")
HEAD_AGGS = ("mean", "rms")


@dataclass
class WPRResult:
    """``importance [B,N]`` (sums to 1 per row), ``per_head [B,H,N]`` (each sums to 1), ``variance
    [B,H]`` (of N·s_h, the head filter's statistic) and ``kept [B,H]`` (heads aggregated)."""

    importance: torch.Tensor
    per_head: torch.Tensor
    variance: torch.Tensor
    kept: torch.Tensor


def initial_scores(n: int, init: str, like: torch.Tensor) -> torch.Tensor:
    """s⁽⁰⁾ as a [N] vector: uniform 1/N, or ``"cls"``: token 0 (the class token) weighs √N times any other."""
    if init == "uniform":
        return torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)
    s = torch.ones(n, dtype=like.dtype, device=like.device)
    s[0] = float(np.sqrt(n))
    return s / s.sum()


def head_variance(per_head: torch.Tensor, alive: torch.Tensor | None = None) -> torch.Tensor:
    """Variance of N·s_h over the N (alive) tokens of every head: [B,H,N] -> [B,H]."""
    if alive is None:
        n = per_head.shape[-1]
        return (per_head * n).var(dim=-1, unbiased=False)
    m = alive.to(per_head.dtype)[:, None, :]
    count = m.sum(-1)
    x = per_head * count.unsqueeze(-1)  # mean 1 over the alive tokens
    return (((x - 1.0) ** 2) * m).sum(-1) / count


def power_iterations(attn: torch.Tensor, s0: torch.Tensor, iters: int, alive: torch.Tensor | None = None) -> torch.Tensor:
    """s ← Aᵀs ``iters`` times for every head: attn [B,H,N,N], s0 [B,N] -> [B,H,N].

    ``alive`` [B,N] (bool): run on the subgraph of the alive tokens, rows renormalised over the alive
    columns (removed tokens neither send nor receive), without copying the submatrix.
    On the CPU a serial numba kernel (:mod:`core.kernels.pagerank`: 5-20× torch's batched
    matrix-vector products for thousands of small graphs, measured); elsewhere torch."""
    b, h, n, _ = attn.shape
    if alive is None:
        row_scale = col_mask = torch.ones(b, h, n, dtype=attn.dtype, device=attn.device)
    else:
        col_mask = alive.to(attn.dtype)[:, None, :].expand(b, h, n)
        gone = (~alive).nonzero()
        if gone.numel():  # mass each row sends to the removed tokens: only their columns are read
            n_gone = int((~alive[0]).sum())
            idx = gone[:, 1].view(b, 1, 1, n_gone).expand(b, h, n, n_gone)
            lost = attn.gather(3, idx).sum(-1)
        else:
            lost = torch.zeros(b, h, n, dtype=attn.dtype, device=attn.device)
        row_scale = col_mask / (1.0 - lost).clamp_min(1e-30)
    s0 = s0[:, None, :].expand(b, h, n)
    if iters == 0:
        return s0
    if attn.device.type == "cpu" and attn.dtype in (torch.float32, torch.float64) and not attn.requires_grad:
        from core.kernels.pagerank import power_iterations as kernel

        flat = attn.detach().reshape(b * h, n, n).contiguous().numpy()

        def arr(t):
            return t.detach().to(attn.dtype).reshape(b * h, n).contiguous().numpy()

        return torch.from_numpy(kernel(flat, arr(s0), arr(row_scale), arr(col_mask), int(iters))).view(b, h, n)
    s = s0
    for _ in range(iters):
        s = torch.matmul((s * row_scale).unsqueeze(2), attn).squeeze(2) * col_mask  # s_new[j] = Σ_i s[i] A[i, j]
    return s


def wpr_details(attn: torch.Tensor, iters: int, init: str = "uniform", head_agg: str = "mean",
                head_filter: tuple[float, float] | None = None, alive: torch.Tensor | None = None) -> WPRResult:
    """WPR of every head, the head filter and the aggregation, without input checks (see :func:`wpr`).
    ``alive`` [B,N] restricts everything to the alive tokens (the removed ones score 0)."""
    b, h, n, _ = attn.shape
    s0 = initial_scores(n, init, attn).expand(b, n)
    if alive is not None:
        s0 = s0 * alive.to(attn.dtype)
        s0 = s0 / s0.sum(-1, keepdim=True)
    per_head = power_iterations(attn, s0, iters, alive)
    per_head = per_head / per_head.sum(-1, keepdim=True).clamp_min(1e-30)  # undo float drift of the mass
    variance = head_variance(per_head, alive)
    if head_filter is None:
        kept = torch.ones(b, h, dtype=torch.bool, device=attn.device)
    else:
        vmin, vmax = head_filter
        kept = (variance >= vmin) & (variance <= vmax)
        kept = kept | ~kept.any(-1, keepdim=True)  # an image whose heads all fall outside keeps them all
    weight = kept.to(per_head.dtype).unsqueeze(-1)
    count = weight.sum(1)
    if head_agg == "rms":
        agg = ((per_head * per_head * weight).sum(1) / count).sqrt()
    else:
        agg = (per_head * weight).sum(1) / count
    importance = agg / agg.sum(-1, keepdim=True).clamp_min(1e-30)
    return WPRResult(importance=importance, per_head=per_head, variance=variance, kept=kept)


def wpr(attn, iters: int = 30, init: str = "uniform", head_agg: str = "mean",
        head_filter: tuple[float, float] | None = None):
    """Token importance by Weighted PageRank on attention graphs (Zero-TPrune, arXiv 2305.17328).

    ``attn``: attention probabilities [B,H,N,N] (torch or numpy; every row sums to 1).
    ``iters``: power iterations s ← Aᵀs per head (0 returns the initial scores).
    ``init``: "uniform" (1/N) or "cls" (token 0 weighs √N times any other token).
    ``head_agg``: "mean" over heads or "rms" (root mean square, the paper's EIR).
    ``head_filter``: None, or ``(v_min, v_max)``: only heads whose variance of N·s_h lies in the
    range are aggregated (all heads when none does).
    Returns the importance [B,N], every row summing to 1, as the input's type (float32 stays float32).
    """
    is_numpy = isinstance(attn, np.ndarray)
    a = torch.from_numpy(np.ascontiguousarray(attn)) if is_numpy else attn
    if not isinstance(a, torch.Tensor):
        raise PruningError(f"wpr: attn must be a torch tensor or numpy array [B,H,N,N], got {type(attn).__name__}.")
    if a.dim() != 4 or a.shape[-1] != a.shape[-2] or a.shape[-1] == 0:
        raise PruningError(f"wpr: attn must have shape [B, H, N, N] (batch, heads, queries, keys), got {tuple(a.shape)}.")
    if not a.is_floating_point():
        a = a.double()
    if isinstance(iters, bool) or not isinstance(iters, (int, np.integer)) or iters < 0:
        raise PruningError(f"wpr: iters must be a whole number ≥ 0, got {iters!r}.")
    if init not in INITS:
        raise PruningError(f"wpr: init must be one of {', '.join(map(repr, INITS))}, got {init!r}.")
    if head_agg not in HEAD_AGGS:
        raise PruningError(f"wpr: head_agg must be one of {', '.join(map(repr, HEAD_AGGS))}, got {head_agg!r}.")
    if head_filter is not None:
        try:
            vmin, vmax = (float(v) for v in head_filter)
        except (TypeError, ValueError):
            raise PruningError(f"wpr: head_filter must be None or a pair (v_min, v_max), got {head_filter!r}.") from None
        if not (0.0 <= vmin < vmax):
            raise PruningError(f"wpr: head_filter needs 0 ≤ v_min < v_max, got ({vmin}, {vmax}).")
        head_filter = (vmin, vmax)
    if not torch.isfinite(a).all() or (a < 0).any():
        raise PruningError("wpr: attention probabilities must be finite and non-negative.")
    rows = a.sum(-1)
    if not torch.allclose(rows, torch.ones_like(rows), atol=1e-3):
        worst = float((rows - 1).abs().max())
        raise PruningError(f"wpr: every row of attn must sum to 1 (softmax probabilities over keys); the largest "
                           f"deviation is {worst:.3g}.")
    out = wpr_details(a, int(iters), init, head_agg, head_filter).importance
    return out.numpy() if is_numpy else out


__all__ = ["HEAD_AGGS", "INITS", "WPRResult", "head_variance", "initial_scores", "wpr", "wpr_details"]
