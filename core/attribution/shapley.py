"""Shapley values: KernelSHAP (sampled coalitions) for images and tables, and exact Shapley values
(every coalition) for tables of up to 12 features, the reference KernelSHAP is tested against.

The players are image segments (a grid of patches or SLIC superpixels) or table features. A
coalition z ∈ {0, 1}^M keeps the players with z_j = 1 and removes the others, and its value is

* images: v(z) = f_c(x with the removed segments replaced by the baseline image);
* tables: v(z) = mean over K background rows b of f_c(x_z, b_{not z}), the interventional
  value function of SHAP's KernelExplainer.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ._image import BASELINE_HELP, IMAGE_BASELINES, image_baseline, segments_for, spread
from .base import (
    EXACT_SHAPLEY_MAX_FEATURES,
    AttributionError,
    ParamSpec,
    PassEstimate,
    Subject,
    image_side_bound,
    register,
    seed_param,
)


def shapley_kernel_mass(m: int) -> np.ndarray:
    """Total Shapley-kernel weight of all coalitions of each size k = 0..m (0 at k = 0 and m):
    C(m, k) · (m−1) / (C(m, k)·k·(m−k)) = (m−1) / (k(m−k)), normalised to sum to 1."""
    k = np.arange(m + 1, dtype=np.float64)
    mass = np.zeros(m + 1)
    inner = (k > 0) & (k < m)
    mass[inner] = (m - 1) / (k[inner] * (m - k[inner]))
    return mass / mass.sum() if mass.sum() > 0 else mass


def kernel_coalitions(m: int, budget: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Coalitions (bool [S, m]) and regression weights [S] for KernelSHAP (Lundberg & Lee 2017).

    Sizes are taken in pairs (k, m−k) from the outside in; a pair is enumerated in full, each
    coalition weighted by its exact kernel weight, while the budget covers it in proportion to its
    kernel mass (the scheme of SHAP's KernelExplainer). The rest of the budget samples the
    remaining sizes in proportion to their mass, each subset uniformly and together with its
    complement (paired sampling, Covert & Lee 2021); duplicates are merged by adding their
    weights. With a budget of 2^m − 2 or more every coalition is enumerated and the regression
    returns the exact Shapley values."""
    mass = shapley_kernel_mass(m)
    rows: list[np.ndarray] = []
    weights: list[float] = []
    left_budget = float(budget)
    left_mass = 1.0
    k = 1
    while k <= m - k:
        sizes = [k] if k == m - k else [k, m - k]
        count = sum(math.comb(m, s) for s in sizes)
        pair_mass = sum(mass[s] for s in sizes)
        if left_mass <= 0 or left_budget * pair_mass / left_mass < count - 1e-9:
            break
        for s in sizes:
            for combo in _combinations(m, s):
                z = np.zeros(m, bool)
                z[list(combo)] = True
                rows.append(z)
                weights.append(mass[s] / math.comb(m, s))
        left_budget -= count
        left_mass -= pair_mass
        k += 1
    if k <= m - k and left_budget >= 2 and left_mass > 1e-12:
        inner = np.arange(k, m - k + 1)
        p = mass[inner] / mass[inner].sum()
        draws = int(left_budget // 2)
        sampled: dict[bytes, list] = {}
        share = left_mass / (2 * draws)
        for size in rng.choice(inner, size=draws, p=p):
            z = np.zeros(m, bool)
            z[rng.choice(m, size=int(size), replace=False)] = True
            for zz in (z, ~z):
                key = zz.tobytes()
                if key in sampled:
                    sampled[key][1] += share
                else:
                    sampled[key] = [zz, share]
        for zz, wt in sampled.values():
            rows.append(zz)
            weights.append(wt)
    if not rows:
        return np.zeros((0, m), bool), np.zeros(0)
    return np.stack(rows), np.asarray(weights)


def _combinations(m: int, k: int):
    from itertools import combinations

    return combinations(range(m), k)


def kernel_regression(z: np.ndarray, weights: np.ndarray, values: np.ndarray, v_empty: np.ndarray,
                      v_full: np.ndarray) -> np.ndarray:
    """Shapley values φ [n, m] from coalition values ``values`` [n, S] by the constrained weighted
    least squares of KernelSHAP: minimise Σ_s w_s (v(z_s) − v(∅) − z_s·φ)² subject to
    Σ_j φ_j = v(1) − v(∅) (efficiency), solved by eliminating the last player."""
    m = z.shape[1]
    delta = v_full - v_empty
    if m == 1:
        return delta[:, None].astype(np.float64)
    if len(z) == 0:
        return np.repeat((delta / m)[:, None], m, axis=1)
    zf = z.astype(np.float64)
    x = zf[:, :-1] - zf[:, -1:]
    y = values - v_empty[:, None] - zf[None, :, -1] * delta[:, None]  # [n, S]
    sw = np.sqrt(weights)[:, None]
    # one least-squares solve for every sample (they share the coalitions and weights)
    beta, *_ = np.linalg.lstsq(x * sw, (y * sw[:, 0][None, :]).T, rcond=None)  # [m-1, n]
    beta = beta.T
    return np.concatenate([beta, (delta - beta.sum(1))[:, None]], axis=1)


def exact_shapley_from_values(v: np.ndarray, m: int) -> np.ndarray:
    """Shapley values [n, m] from the values of all 2^m coalitions ``v`` [n, 2^m] (bit j = player j):
    φ_j = Σ_{S ∌ j} |S|!(m−|S|−1)!/m! · (v(S ∪ {j}) − v(S))."""
    masks = np.arange(1 << m)
    size = np.array([bin(s).count("1") for s in masks])
    w = np.array([math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) if s < m else 0.0 for s in range(m + 1)])
    phi = np.zeros((v.shape[0], m))
    for j in range(m):
        without = masks[(masks >> j) & 1 == 0]
        phi[:, j] = ((v[:, without | (1 << j)] - v[:, without]) * w[size[without]]).sum(1)
    return phi


# ---------------------------------------------------------------------------------------------- values
def _table_background(subject: Subject, size: int, seed: int) -> np.ndarray:
    bg = subject.background
    if len(bg) <= size:
        return bg
    return bg[np.sort(np.random.default_rng(int(seed)).choice(len(bg), size, replace=False))]


def table_coalition_values(subject: Subject, z: np.ndarray, background: np.ndarray,
                           progress_span: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """v[i, s] = mean_k f_c(x_i on the players of z_s, background row k elsewhere), float64 [n, S]."""
    x = subject.x_np
    n, m = x.shape
    s_count, k = len(z), len(background)
    per = s_count * k
    v = np.zeros((n, s_count))

    def build(s, e):
        r = np.arange(s, e)
        i, c, b = r // per, (r % per) // k, r % k
        keep = z[c]
        return np.where(keep, x[i], background[b])

    def consume(s, e, out):
        r = np.arange(s, e)
        np.add.at(v, (r // per, (r % per) // k), out / k)

    subject.run_chunks(n * per, build, consume, targets_of=lambda s, e: subject.targets[np.arange(s, e) // per],
                       progress_span=progress_span)
    return v


def image_coalition_values(subject: Subject, index: int, z: np.ndarray, labels: np.ndarray, base: torch.Tensor,
                           progress_span: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """v[s] = f_c(image ``index`` keeping the segments of z_s, the baseline elsewhere), float64 [S]."""
    x = subject.x[index]
    lab = torch.from_numpy(labels)
    zt = torch.from_numpy(z)
    v = np.zeros(len(z))

    def build(s, e):
        keep = zt[s:e][:, lab].unsqueeze(1)  # [B, 1, H, W]
        return torch.where(keep, x.unsqueeze(0), base[index].unsqueeze(0))

    def consume(s, e, out):
        v[s:e] = out

    target = subject.targets[index]
    subject.run_chunks(len(z), build, consume, targets_of=lambda s, e: np.full(e - s, target), progress_span=progress_span)
    return v


# ---------------------------------------------------------------------------------------------- methods
def _kernelshap_cost(facts, params) -> PassEstimate:
    budget = int(params.get("samples", 1000))
    if facts.get("input_kind") == "table":
        m = int(facts.get("n_features", 10))
        coalitions = min(budget, 2 ** m - 2) + 2
        return PassEstimate(forward=coalitions * int(params.get("background_size", 50)))
    return PassEstimate(forward=budget + 2)


@register("kernelshap", "KernelSHAP", "shapley", set(), "Lundberg & Lee, NeurIPS 2017",
          params=(ParamSpec("samples", 1000, "int", "Coalitions evaluated (budget). With 2^M − 2 or more every coalition "
                            "is used and the values are exact.", low=16, high=100000, log=True),
                  ParamSpec("background_size", 50, "int", "Tables: background rows averaged for each coalition.", low=1,
                            high=1000, log=True),
                  ParamSpec("segments", "grid", "choice", "Images: the players are a grid of patches or SLIC superpixels.",
                            choices=("grid", "superpixels")),
                  ParamSpec("grid", 8, "int", "Images: patches per side of the grid (grid² players).", low=1, high=64,
                            bound=image_side_bound),
                  ParamSpec("superpixels", 50, "int", "Images: number of SLIC superpixels asked for.", low=2, high=1000),
                  ParamSpec("baseline", "zero", "choice", "Images: " + BASELINE_HELP, choices=IMAGE_BASELINES),
                  ParamSpec("blur_sigma", 4.0, "float", "Width (pixels) of the blur for the 'blur' baseline.", low=0.5,
                            high=64.0),
                  seed_param()),
          inputs=("image", "table"), cost=_kernelshap_cost, stochastic=True,
          slow="one forward pass per coalition (times the background rows for tables): about 1,000 per sample")
def kernelshap(subject: Subject, params: dict):
    """KernelSHAP: the Shapley values φ of the coalition game v (see the module docstring) as the
    solution of a weighted linear regression on sampled coalitions with the Shapley kernel
    π(z) = (M−1) / (C(M,|z|)·|z|·(M−|z|)), constrained so that Σφ = v(all) − v(none). Images: one
    value per segment, spread over its pixels and channels. Tables: f_c is the probability of
    scikit-learn models and the logit of torch models. One forward pass per coalition (tables:
    times the background rows)."""
    rng = np.random.default_rng(int(params["seed"]))
    budget = params["samples"]
    if subject.kind == "table":
        m = subject.x_np.shape[1]
        z, w = kernel_coalitions(m, budget, rng)
        ends = np.stack([np.zeros(m, bool), np.ones(m, bool)])
        bg = _table_background(subject, params["background_size"], params["seed"])
        v = table_coalition_values(subject, np.concatenate([ends, z]), bg)
        phi = kernel_regression(z, w, v[:, 2:], v[:, 0], v[:, 1])
        return phi, {"coalitions": len(z) + 2}
    x = subject.x
    n, c = x.shape[:2]
    base = image_baseline(subject.model, x, params["baseline"], params["blur_sigma"], params["seed"])
    labels = segments_for(subject.model, x, params["segments"], params["grid"], params["superpixels"])
    out = np.zeros(x.shape, np.float32)
    players = []
    for i in range(n):
        m = int(labels[i].max()) + 1
        z, w = kernel_coalitions(m, budget, rng)
        ends = np.stack([np.zeros(m, bool), np.ones(m, bool)])
        v = image_coalition_values(subject, i, np.concatenate([ends, z]), labels[i], base, (i / n, (i + 1) / n))
        phi = kernel_regression(z, w, v[None, 2:], v[None, 0:1].ravel(), v[None, 1:2].ravel())[0]
        out[i] = spread(phi, labels[i], c)
        players.append(m)
    return out, {"players": np.asarray(players)}


def _exact_cost(facts, params) -> PassEstimate:
    m = int(facts.get("n_features", 10))
    return PassEstimate(forward=(2 ** min(m, 30)) * int(params.get("background_size", 50)))


@register("exact-shapley", "Exact Shapley", "shapley", {"tables"}, "Shapley, 1953; Lundberg & Lee, NeurIPS 2017",
          params=(ParamSpec("background_size", 50, "int", "Background rows averaged for each coalition.", low=1, high=1000,
                            log=True),
                  seed_param()),
          inputs=("table",), cost=_exact_cost,
          slow="2^M coalitions times the background rows per sample (M ≤ 12 features)")
def exact_shapley(subject: Subject, params: dict):
    """Exact Shapley values of the table value function v(S) = mean_b f_c(x_S, b_{not S}) (the same
    game KernelSHAP approximates): φ_j = Σ_{S ∌ j} |S|!(M−|S|−1)!/M! · (v(S ∪ {j}) − v(S)), every
    one of the 2^M coalitions evaluated. Limited to M ≤ 12 features; the reference KernelSHAP
    converges to. 2^M forward passes per sample, times the background rows."""
    m = subject.x_np.shape[1]
    if m > EXACT_SHAPLEY_MAX_FEATURES:
        raise AttributionError(f"Exact Shapley values are limited to {EXACT_SHAPLEY_MAX_FEATURES} features (2^M coalitions); "
                               f"this table has {m}. Use KernelSHAP.")
    masks = np.arange(1 << m)
    z = ((masks[:, None] >> np.arange(m)[None, :]) & 1).astype(bool)
    bg = _table_background(subject, params["background_size"], params["seed"])
    v = table_coalition_values(subject, z, bg)
    return exact_shapley_from_values(v, m), {"coalitions": len(z)}
