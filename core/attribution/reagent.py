"""ReAGent (Zhao & Shan, 2024): model-agnostic recursive replacement, for image patches and table features.

Adapted from text tokens to image patches and table features, the units the issue names: patches
are replaced by the baseline image's pixels (a blur by default), features by values drawn from
the background rows' column (the training marginal).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ._image import BASELINE_HELP, IMAGE_BASELINES, grid_segments, image_baseline, spread
from .base import ParamSpec, PassEstimate, Subject, image_side_bound, register, seed_param

_EPS = 1e-6


def _reagent_cost(facts, params) -> PassEstimate:
    """An upper bound: every probe runs all its steps (the stopping condition is not checked before min_steps)."""
    probes, steps = int(params.get("probes", 5)), int(params.get("max_steps", 50))
    checks = max(0, steps - max(int(params.get("min_steps", 10)) - 1, 0))
    return PassEstimate(forward=1 + probes * (steps + checks))


def _softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@register("reagent", "ReAGent", "perturbation", set(), "Zhao & Shan, AAAI ReLM workshop 2024 (arXiv 2402.00794); "
          "github casszhao/ReAGent",
          params=(ParamSpec("probes", 5, "int", "Independent runs averaged (the paper's aggregation).", low=1, high=50),
                  ParamSpec("replace_ratio", 0.3, "float", "Probability that a unit is replaced at each update step.",
                            low=0.05, high=0.9),
                  ParamSpec("keep_ratio", 0.3, "float", "Share of units (the most important) kept when the stopping "
                            "condition is checked; the rest are replaced.", low=0.05, high=0.95),
                  ParamSpec("top_k", 1, "int", "Stop once the target is among the top-k predictions with only the kept "
                            "units intact.", low=1, high=20),
                  ParamSpec("max_steps", 50, "int", "Update steps at most per probe.", low=1, high=1000, log=True),
                  ParamSpec("min_steps", 10, "int", "Update steps before the stopping condition is checked (0: from the "
                            "first step, as the paper does). With few classes the top-k test can pass by chance before "
                            "the scores have formed.", low=0, high=1000),
                  ParamSpec("grid", 8, "int", "Images: patches per side (the units are grid² patches).", low=1, high=64,
                            bound=image_side_bound),
                  ParamSpec("baseline", "blur", "choice", "Images: what replaces a patch. " + BASELINE_HELP,
                            choices=IMAGE_BASELINES),
                  ParamSpec("blur_sigma", 4.0, "float", "Width (pixels) of the blur for the 'blur' baseline.", low=0.5,
                            high=64.0),
                  seed_param()),
          inputs=("image", "table"), score="probability", cost=_reagent_cost, stochastic=True,
          slow="two forward passes per update step and probe: up to 500 per sample by default")
def reagent(subject: Subject, params: dict):
    """ReAGent: every unit (image patch or table feature) has a logit score s ~ U(0, 1). Each step
    replaces each unit with probability r and measures Δ = p_c(x) − p_c(x replaced) (softmax
    probability of the target); a replaced unit gains logit((Δ+1)/2), a kept one logit((−Δ+1)/2),
    and the importance is softmax(s). A probe stops once keeping only its top units (keep ratio)
    and replacing the rest leaves the target among the top-k predictions. The importance is the
    mean over the probes that stopped (all probes when none did; ``info["stopped"]`` counts them),
    positive and summing to 1 over the units. Deviation from the paper: by default the stopping
    condition is only checked after ``min_steps`` updates, because with a handful of classes (not a
    vocabulary) "the target is in the top k" holds by chance for a random ranking and probes would
    stop with their random initial scores. Up to 2·max_steps forward passes per probe."""
    rng = np.random.default_rng(int(params["seed"]))
    image = subject.kind == "image"
    x = subject.x
    n = subject.n
    if image:
        _, c, h, w = x.shape
        labels = grid_segments(h, w, params["grid"])
        lab = torch.from_numpy(labels)
        m = int(labels.max()) + 1
        base = image_baseline(subject.model, x, params["baseline"], params["blur_sigma"], params["seed"])
    else:
        xs = subject.x_np
        m = xs.shape[1]
        bg = subject.background
    probes = params["probes"]
    keep_n = max(1, min(m, int(math.ceil(params["keep_ratio"] * m))))
    ratio, top_k = params["replace_ratio"], params["top_k"]
    p_orig = subject.target_scores(x, subject.targets, probability=True)

    def replaced(sample: np.ndarray, replace: np.ndarray):
        """Rows of the given samples with the units marked in ``replace`` [R, M] replaced."""
        if image:
            pix = torch.from_numpy(replace)[:, lab].unsqueeze(1)  # [R, 1, H, W]
            idx = torch.from_numpy(sample)
            return torch.where(pix, base[idx], x[idx])
        donors = rng.integers(0, len(bg), size=replace.shape)
        return np.where(replace, bg[donors, np.arange(m)[None, :]], xs[sample])

    def outputs(rows) -> np.ndarray:
        if isinstance(rows, torch.Tensor):
            return subject.predict_torch(rows, probability=True).double().numpy()
        return subject.predict_np(rows, probability=True)

    result = np.zeros((n, m))
    stopped_count = np.zeros(n, np.int64)
    group = max(1, subject.rows_per_batch() // probes)
    for g0 in range(0, n, group):
        g1 = min(n, g0 + group)
        sample = np.repeat(np.arange(g0, g1), probes)  # one row per (sample, probe)
        target = subject.targets[sample]
        scores = rng.random((len(sample), m))
        active = np.ones(len(sample), bool)
        stopped = np.zeros(len(sample), bool)
        for step in range(params["max_steps"]):
            idx = np.flatnonzero(active)
            if len(idx) == 0:
                break
            replace = rng.random((len(idx), m)) < ratio
            p = outputs(replaced(sample[idx], replace))[np.arange(len(idx)), target[idx]]
            delta = (p_orig[sample[idx]] - p)[:, None]
            signed = np.where(replace, delta, -delta)
            q = np.clip((signed + 1.0) / 2.0, _EPS, 1.0 - _EPS)
            scores[idx] += np.log(q) - np.log1p(-q)
            if step + 1 < params["min_steps"]:
                continue
            importance = _softmax(scores[idx])
            top = np.argsort(-importance, axis=1, kind="stable")[:, :keep_n]
            drop = np.ones((len(idx), m), bool)
            np.put_along_axis(drop, top, False, axis=1)
            out = outputs(replaced(sample[idx], drop))
            rank = (out > out[np.arange(len(idx)), target[idx]][:, None]).sum(1)  # classes strictly above the target
            done = rank < top_k
            stopped[idx[done]] = True
            active[idx[done]] = False
        importance = _softmax(scores)
        for k, i in enumerate(range(g0, g1)):
            rows = slice(k * probes, (k + 1) * probes)
            use = stopped[rows]
            chosen = importance[rows][use] if use.any() else importance[rows]
            result[i] = chosen.mean(0)
            stopped_count[i] = int(use.sum())
        subject.report(g1 / n)
    info = {"stopped": stopped_count, "probes": probes}
    if image:
        return np.stack([spread(result[i], labels, c) for i in range(n)]), info
    return result, info
