"""Shapley values of a game given by its coalition values: exact enumeration and permutation sampling.

Coalitions are bitmasks over the P players (bit j set = player j takes its target form). Values
come as arrays whose last axis follows a list of masks, and any leading axes (bootstrap
replicates) are carried along, so one call gives the point estimate and every replicate.

Exact (Shapley 1953):
    φ_i = Σ_{S ⊆ N∖{i}} |S|!·(P − |S| − 1)!/P! · (v(S ∪ {i}) − v(S)).
Permutation sampling (Castro et al. 2009): φ_i ≈ mean over orderings π of v(Pre_π(i) ∪ {i}) −
v(Pre_π(i)); each ordering is used with its reverse (antithetic pairs). Both satisfy efficiency
exactly: Σ_i φ_i = v(N) − v(∅) (the sampled marginal contributions telescope along each ordering).
"""
from __future__ import annotations

from math import factorial

import numpy as np

from .base import MAX_EXACT_PLAYERS, ShiftError


def all_masks(p: int) -> np.ndarray:
    return np.arange(1 << p, dtype=np.int64)


def popcount(masks: np.ndarray) -> np.ndarray:
    masks = np.asarray(masks, np.int64)
    out = np.zeros(masks.shape, np.int64)
    m = masks.copy()
    while m.any():
        out += m & 1
        m >>= 1
    return out


def shapley_coefficients(p: int) -> np.ndarray:
    """c[k] = k!·(P − k − 1)!/P!: the weight of a coalition of size k not containing the player."""
    return np.array([factorial(k) * factorial(p - k - 1) / factorial(p) for k in range(p)])


def exact_shapley(values: np.ndarray, p: int) -> np.ndarray:
    """Shapley values [..., P] from the values [..., 2^P] of every coalition (index = bitmask)."""
    values = np.asarray(values, np.float64)
    if values.shape[-1] != 1 << p:
        raise ValueError(f"exact_shapley: expected 2^{p} = {1 << p} coalition values, got {values.shape[-1]}.")
    masks = all_masks(p)
    coef = shapley_coefficients(p)
    size = popcount(masks)
    out = np.empty(values.shape[:-1] + (p,))
    for i in range(p):
        bit = 1 << i
        without = masks[(masks & bit) == 0]
        out[..., i] = ((values[..., without | bit] - values[..., without]) * coef[size[without]]).sum(-1)
    return out


def sample_permutations(p: int, n_permutations: int, rng: np.random.Generator) -> np.ndarray:
    """[2·⌈n/2⌉, P] orderings: ⌈n/2⌉ random ones, each followed by its reverse."""
    half = max(1, (n_permutations + 1) // 2)
    forward = np.array([rng.permutation(p) for _ in range(half)], np.int64)
    return np.concatenate([forward, forward[:, ::-1]]).reshape(-1, p)


def permutation_masks(perms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The coalitions met along the orderings: (unique masks, index [M, P+1] of each prefix in them)."""
    m, p = perms.shape
    prefix = np.zeros((m, p + 1), np.int64)
    for k in range(p):
        prefix[:, k + 1] = prefix[:, k] | (np.int64(1) << perms[:, k])
    masks, index = np.unique(prefix, return_inverse=True)
    return masks, index.reshape(m, p + 1)


def permutation_shapley(values: np.ndarray, perms: np.ndarray, prefix_index: np.ndarray) -> np.ndarray:
    """Shapley estimates [..., P] from the values [..., K] of the masks of :func:`permutation_masks`."""
    values = np.asarray(values, np.float64)
    m, p = perms.shape
    marginal = values[..., prefix_index[:, 1:]] - values[..., prefix_index[:, :-1]]  # [..., M, P] by position
    out = np.zeros(values.shape[:-1] + (p,))
    for k in range(p):
        for player in range(p):
            sel = perms[:, k] == player
            if sel.any():
                out[..., player] += marginal[..., sel, k].sum(-1)
    return out / m


def resolve_method(method: str, p: int) -> str:
    """"auto" → exact up to MAX_EXACT_PLAYERS players, permutation sampling beyond."""
    if method == "auto":
        return "exact" if p <= MAX_EXACT_PLAYERS else "permutation"
    if method == "exact" and p > MAX_EXACT_PLAYERS:
        raise ShiftError(f"Exact Shapley values enumerate 2^P coalitions; with {p} mechanisms that is {1 << p:,}. "
                         f"Use shapley='permutation' (or 'auto') beyond {MAX_EXACT_PLAYERS} mechanisms.")
    if method not in ("exact", "permutation"):
        raise ShiftError(f"shapley must be 'auto', 'exact' or 'permutation', got {method!r}.")
    return method


def share_residual(phi: np.ndarray, target_sum: np.ndarray, rule: str) -> np.ndarray:
    """Adjust φ [..., P] so that it sums to ``target_sum`` [...] (the observed change).

    "proportional": the gap is shared in proportion to |φ_i| (equally when every φ is 0), so no sign
    flips and no blow-up when Σφ is near 0; "uniform": shared equally, which gives the exact Shapley
    values of the game whose grand-coalition value is replaced by ``target_sum`` (every player's
    marginal contribution to N∖{i} carries weight 1/P); "rescale": φ · target_sum/Σφ (the reference
    implementation's choice; unstable when Σφ is near 0)."""
    phi = np.asarray(phi, np.float64)
    gap = np.asarray(target_sum, np.float64) - phi.sum(-1)
    p = phi.shape[-1]
    if rule == "uniform":
        return phi + gap[..., None] / p
    if rule == "rescale":
        s = phi.sum(-1, keepdims=True)
        return np.where(np.abs(s) > 1e-300, phi * (np.asarray(target_sum)[..., None] / np.where(s == 0, 1, s)),
                        phi + gap[..., None] / p)
    if rule == "proportional":
        mag = np.abs(phi)
        total = mag.sum(-1, keepdims=True)
        share = np.where(total > 0, mag / np.where(total > 0, total, 1), 1.0 / p)
        return phi + gap[..., None] * share
    raise ShiftError(f"efficiency must be 'proportional', 'uniform' or 'rescale', got {rule!r}.")


__all__ = ["all_masks", "exact_shapley", "permutation_masks", "permutation_shapley", "popcount", "resolve_method",
           "sample_permutations", "shapley_coefficients", "share_residual"]
