"""Perturbation methods: occlusion and RISE for images, feature ablation and permutation for tables.

They only run the model forward, so they explain any model: torch networks and, for tables,
anything with ``predict_proba``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ._image import BASELINE_HELP, IMAGE_BASELINES, image_baseline
from .base import ParamSpec, PassEstimate, Subject, image_side_bound, register, seed_param


def occlusion_positions(height: int, width: int, patch: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners of the windows: every ``stride`` pixels while the window fits (Captum's layout)."""
    rows = range(0, max(height - patch, 0) + 1, stride)
    cols = range(0, max(width - patch, 0) + 1, stride)
    return [(r, c) for r in rows for c in cols]


def _occlusion_cost(facts, params) -> PassEstimate:
    h, w = facts.get("height", 64), facts.get("width", 64)
    return PassEstimate(forward=len(occlusion_positions(h, w, int(params.get("patch", 8)), int(params.get("stride", 4)))) + 1)


@register("occlusion", "Occlusion", "perturbation", {"images"}, "Zeiler & Fergus, ECCV 2014",
          params=(ParamSpec("patch", 8, "int", "Side of the square window that is occluded (pixels).", low=1, high=512,
                            bound=image_side_bound),
                  ParamSpec("stride", 4, "int", "Step between window positions (pixels).", low=1, high=512,
                            bound=image_side_bound),
                  ParamSpec("baseline", "zero", "choice", BASELINE_HELP, choices=IMAGE_BASELINES),
                  ParamSpec("blur_sigma", 4.0, "float", "Width (pixels) of the blur for the 'blur' baseline.", low=0.5,
                            high=64.0),
                  seed_param()),
          cost=_occlusion_cost)
def occlusion(subject: Subject, params: dict):
    """Occlusion: slide a patch×patch window over the image, replace it (all channels) with the
    baseline, and credit every pixel under the window with the drop of the target logit,
    f_c(x) − f_c(x with the window occluded), averaged over the windows that cover it (Captum's
    convention; pixels no window covers get 0). One forward pass per window position, plus one."""
    x = subject.x
    n, c, h, w = x.shape
    patch, stride = min(params["patch"], h, w), params["stride"]
    base = image_baseline(subject.model, x, params["baseline"], params["blur_sigma"], params["seed"])
    positions = occlusion_positions(h, w, patch, stride)
    p = len(positions)
    f_x = subject.target_scores(x, subject.targets)
    drops = np.zeros((n, p))

    def build(s, e):
        r = torch.arange(s, e)
        i = r // p
        rows = x[i].clone()
        for k, j in enumerate((r % p).tolist()):
            top, left = positions[j]
            rows[k, :, top:top + patch, left:left + patch] = base[i[k], :, top:top + patch, left:left + patch]
        return rows

    def consume(s, e, out):
        r = np.arange(s, e)
        drops[r // p, r % p] = f_x[r // p] - out

    subject.run_chunks(n * p, build, consume, targets_of=lambda s, e: subject.targets[np.arange(s, e) // p])
    total = np.zeros((n, h, w))
    count = np.zeros((h, w))
    for j, (top, left) in enumerate(positions):
        total[:, top:top + patch, left:left + patch] += drops[:, j, None, None]
        count[top:top + patch, left:left + patch] += 1
    per_pixel = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    return np.broadcast_to(per_pixel[:, None], x.shape).astype(np.float32), {"windows": p}


# ---------------------------------------------------------------------------------------------- RISE
RISE_BLOCK = 256  # masks drawn per block: fixes the random stream whatever the batch size


def rise_masks(count: int, grid: int, p: float, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` RISE masks [count, H, W] in [0, 1] (Petsiuk et al. 2018, §3.2).

    A grid×grid binary grid with P(1) = p is upsampled bilinearly to (grid+1)·cell pixels
    (cell = ⌈H/grid⌉) and cropped at a random shift in [0, cell) along each axis, so the masks
    are smooth and their edges fall anywhere."""
    cell_h, cell_w = math.ceil(height / grid), math.ceil(width / grid)
    coarse = (torch.rand((count, 1, grid, grid), generator=generator) < p).float()
    up = F.interpolate(coarse, size=((grid + 1) * cell_h, (grid + 1) * cell_w), mode="bilinear", align_corners=False)[:, 0]
    dy = torch.randint(0, cell_h, (count,), generator=generator)
    dx = torch.randint(0, cell_w, (count,), generator=generator)
    rows = (dy[:, None] + torch.arange(height))[:, :, None]
    cols = (dx[:, None] + torch.arange(width))[:, None, :]
    return up[torch.arange(count)[:, None, None], rows, cols].clamp_(0.0, 1.0)  # bilinear weights can round past 1


def _rise_cost(facts, params) -> PassEstimate:
    return PassEstimate(forward=int(params.get("masks", 2000)))


@register("rise", "RISE", "perturbation", {"images"}, "Petsiuk, Das & Saenko, BMVC 2018",
          params=(ParamSpec("masks", 2000, "int", "Random masks (the paper uses 4000 to 8000 on ImageNet).", low=16,
                            high=20000, log=True),
                  ParamSpec("grid", 7, "int", "Cells per side of the coarse random grid.", low=2, high=64,
                            bound=image_side_bound),
                  ParamSpec("p", 0.5, "float", "Probability that a grid cell is kept.", low=0.05, high=0.95),
                  ParamSpec("centre", True, "bool", "Subtract the mean score over the masks, so a pixel that does not "
                            "change the score gets 0 and the sign says for or against the class. Off: the paper's map, "
                            "which differs by about a constant and ranks pixels the same."),
                  seed_param()),
          score="probability", cost=_rise_cost, stochastic=True,
          slow="one forward pass per mask: 2,000 passes per image by default")
def rise(subject: Subject, params: dict):
    """RISE: S_c = Σᵢ P_c(x ⊙ Mᵢ) Mᵢ / (N·p), the average of N random smooth masks Mᵢ weighted by
    the target's softmax probability on the masked image (masked pixels go to 0 in the model's
    input space, the normalisation's mean colour, as in the authors' code). Centred (the default):
    Σᵢ (P_c(x ⊙ Mᵢ) − P̄) Mᵢ / (N·p) with P̄ the mean over the masks, the paper's map minus what a
    pixel unrelated to the score receives, which also cancels the noise of uneven mask coverage.
    The same value goes to every channel. One forward pass per mask."""
    x = subject.x
    n, c, h, w = x.shape
    total_masks, grid, prob = params["masks"], params["grid"], params["p"]
    gen = torch.Generator().manual_seed(int(params["seed"]))
    sal = torch.zeros((n, h * w), dtype=torch.float64)
    coverage = torch.zeros(h * w, dtype=torch.float64)  # Σᵢ Mᵢ, for centring
    score_sum = torch.zeros(n, dtype=torch.float64)
    t = torch.as_tensor(subject.targets)
    step = subject.rows_per_batch()
    done = 0
    while done < total_masks:
        count = min(RISE_BLOCK, total_masks - done)
        masks = rise_masks(count, grid, prob, h, w, gen)
        flat = masks.reshape(count, -1).double()  # sums in float64: the centring must cancel exactly
        # rows (image i, mask j), image-major, evaluated in bounded chunks; within a chunk each image's
        # rows are one contiguous run of masks, so they are built by broadcasting, without gathers
        rows_total = n * count
        for s in range(0, rows_total, step):
            e = min(rows_total, s + step)
            runs = [(img, max(s, img * count) - img * count, min(e, (img + 1) * count) - img * count)
                    for img in range(s // count, (e - 1) // count + 1)]
            batch = torch.cat([x[img:img + 1] * masks[j0:j1, None] for img, j0, j1 in runs])
            with torch.inference_mode():
                probs = subject.model(batch).float().softmax(1)
            at = 0
            for img, j0, j1 in runs:
                scores = probs[at:at + j1 - j0, t[img]]
                at += j1 - j0
                score_sum[img] += float(scores.double().sum())
                sal[img] += scores.double() @ flat[j0:j1]  # Σ_j P_ij M_j
        coverage += flat.sum(0)
        done += count
        subject.report(done / total_masks)
    if params["centre"]:
        sal -= (score_sum / total_masks)[:, None] * coverage[None, :]
    sal /= total_masks * prob
    per_pixel = sal.reshape(n, h, w).numpy()
    return np.broadcast_to(per_pixel[:, None], x.shape).astype(np.float32), {}


# ---------------------------------------------------------------------------------------------- tables
TABLE_BASELINES = ("mean", "median", "zero")


def table_reference(subject: Subject, kind: str) -> np.ndarray:
    bg = subject.background
    if kind == "mean":
        return bg.mean(0)
    if kind == "median":
        return np.median(bg, 0)
    return np.zeros(bg.shape[1])


def _ablation_cost(facts, params) -> PassEstimate:
    return PassEstimate(forward=int(facts.get("n_features", 10)) + 1)


@register("feature-ablation", "Feature ablation", "perturbation", {"tables"},
          "Zeiler & Fergus, ECCV 2014 (occlusion); Captum's FeatureAblation",
          params=(ParamSpec("baseline", "mean", "choice", "What replaces a feature: the background rows' mean or median, "
                            "or zero.", choices=TABLE_BASELINES),),
          inputs=("table",), cost=_ablation_cost)
def feature_ablation(subject: Subject, params: dict):
    """Feature ablation: φ_ij = f_c(x_i) − f_c(x_i with feature j set to the baseline b_j), one
    feature at a time. f_c is the target's probability for scikit-learn models and its logit
    for torch models. One forward pass per feature, plus one."""
    x = subject.x_np
    n, m = x.shape
    ref = table_reference(subject, params["baseline"])
    f_x = subject.target_scores(x, subject.targets)
    drops = np.zeros((n, m))

    def build(s, e):
        r = np.arange(s, e)
        rows = x[r // m].copy()
        rows[np.arange(e - s), r % m] = ref[r % m]
        return rows

    def consume(s, e, out):
        r = np.arange(s, e)
        drops[r // m, r % m] = f_x[r // m] - out

    subject.run_chunks(n * m, build, consume, targets_of=lambda s, e: subject.targets[np.arange(s, e) // m])
    return drops, {}


def _permutation_cost(facts, params) -> PassEstimate:
    return PassEstimate(forward=int(facts.get("n_features", 10)) * int(params.get("repeats", 10)) + 1)


@register("permutation", "Permutation", "perturbation", {"tables"},
          "Breiman, Machine Learning 2001; Fisher, Rudin & Dominici, JMLR 2019; Captum's FeaturePermutation",
          params=(ParamSpec("repeats", 10, "int", "Random permutations averaged per feature.", low=1, high=200),
                  seed_param()),
          inputs=("table",), cost=_permutation_cost, stochastic=True)
def permutation(subject: Subject, params: dict):
    """Permutation importance per sample: φ_ij = f_c(x_i) − mean_r f_c(x_i with x_ij replaced by
    x_{π_r(i), j}), with π_r random permutations of the background rows (by default the input rows
    themselves, as Captum's FeaturePermutation permutes the batch). Averaged over the samples, φ
    is the drop of the mean target score when the column is permuted, the quantity behind
    Breiman's permutation importance (which takes the drop in accuracy). One forward pass per
    feature and repeat, plus one."""
    x = subject.x_np
    bg = subject.background
    n, m = x.shape
    k = len(bg)
    repeats = params["repeats"]
    rng = np.random.default_rng(int(params["seed"]))
    # donors[r, i]: the background row whose value replaces sample i's feature in repeat r
    donors = np.stack([rng.permutation(k)[np.arange(n) % k] if k >= n else rng.integers(0, k, n) for _ in range(repeats)])
    f_x = subject.target_scores(x, subject.targets)
    total = np.zeros((n, m))
    per = repeats * m  # rows per sample: (repeat, feature)

    def build(s, e):
        r = np.arange(s, e)
        i, rep, j = r // per, (r % per) // m, r % m
        rows = x[i].copy()
        rows[np.arange(e - s), j] = bg[donors[rep, i], j]
        return rows

    def consume(s, e, out):
        r = np.arange(s, e)
        np.add.at(total, (r // per, r % m), out)

    subject.run_chunks(n * per, build, consume, targets_of=lambda s, e: subject.targets[np.arange(s, e) // per])
    return f_x[:, None] - total / repeats, {}
