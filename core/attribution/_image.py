"""Image helpers shared by the methods: baselines, blurring, patch grids, superpixels, and
spreading one value per patch back over the pixels and channels."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .base import AttributionError, pixel_bounds

#: What "removing" an image region means, in the model's input space.
IMAGE_BASELINES = ("zero", "black", "blur", "noise", "mean")
BASELINE_HELP = ("What replaces the removed pixels: 'zero' is 0 in the model's input space (the normalisation's mean "
                 "colour, what Captum and the RISE code use), 'black' black pixels, 'blur' a Gaussian blur of the image, "
                 "'noise' uniform random pixels, 'mean' the image's own mean colour.")


def gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [N, C, H, W] with reflected borders (the kernel is cut to fit small images)."""
    if sigma <= 0:
        return x.clone()
    n, c, h, w = x.shape
    k = gaussian_kernel(sigma)
    radius = len(k) // 2
    out = x
    for dim, size in ((2, h), (3, w)):
        r = min(radius, size - 1)
        kk = k[radius - r: radius + r + 1]
        kk = kk / kk.sum()
        if r == 0:
            continue
        pad = (0, 0, r, r) if dim == 2 else (r, r, 0, 0)
        y = F.pad(out, pad, mode="reflect")
        weight = kk.view(1, 1, -1, 1) if dim == 2 else kk.view(1, 1, 1, -1)
        y = F.conv2d(y.reshape(n * c, 1, *y.shape[2:]), weight)
        out = y.reshape(n, c, h, w)
    return out


def image_baseline(model, x: torch.Tensor, kind: str, blur_sigma: float = 4.0, seed: int = 0) -> torch.Tensor:
    """The reference image for each input (same shape as ``x``); see :data:`BASELINE_HELP`."""
    lo, hi = pixel_bounds(model, x.shape[1])
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "black":
        return lo.expand_as(x).clone()
    if kind == "blur":
        return gaussian_blur(x, blur_sigma)
    if kind == "noise":
        g = torch.Generator().manual_seed(int(seed))
        u = torch.rand(x.shape, generator=g)
        return lo + u * (hi - lo)
    if kind == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    raise AttributionError(f"Unknown image baseline {kind!r}; expected one of {', '.join(IMAGE_BASELINES)}.")


def pixel_range(model, channels: int) -> torch.Tensor:
    """hi - lo per channel [1, C, 1, 1]: the span of valid pixels in input space."""
    lo, hi = pixel_bounds(model, channels)
    return hi - lo


# ---------------------------------------------------------------------------------------------- segments
def grid_segments(height: int, width: int, cells: int) -> np.ndarray:
    """Labels [H, W] of a cells×cells grid of near-equal patches (row-major, 0..cells²-1)."""
    cells_h, cells_w = min(cells, height), min(cells, width)
    rows = np.minimum((np.arange(height) * cells_h) // height, cells_h - 1)
    cols = np.minimum((np.arange(width) * cells_w) // width, cells_w - 1)
    return (rows[:, None] * cells_w + cols[None, :]).astype(np.int64)


def superpixels(images01: np.ndarray, n_segments: int, compactness: float = 0.1, iterations: int = 10) -> np.ndarray:
    """SLIC superpixels (Achanta et al. 2012, TPAMI) of one image [C, H, W] with values in [0, 1].

    k-means in (colour, position) space, started on a regular grid of step S = √(HW/k), with the
    distance D² = ‖Δcolour‖² + (m·‖Δposition‖/S)² (m = ``compactness``; 0.1 on a [0, 1] colour
    scale is SLIC's m = 10 on Lab's 0-100). Every pixel is compared with every centre, which is
    exact and cheap at the image sizes here. Returns consecutive labels [H, W] (empty clusters
    dropped; a cluster need not be connected).
    """
    c, h, w = images01.shape
    k = int(max(1, min(n_segments, h * w)))
    step = math.sqrt(h * w / k)
    gh = max(1, int(round(h / step)))
    gw = max(1, int(math.ceil(k / gh)))
    ys = (np.arange(gh) + 0.5) * h / gh
    xs = (np.arange(gw) + 0.5) * w / gw
    cy, cx = np.meshgrid(ys, xs, indexing="ij")
    cy, cx = cy.ravel()[:k], cx.ravel()[:k]
    yy, xx = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    pos = np.stack([yy.ravel(), xx.ravel()], 1)  # [P, 2]
    col = images01.reshape(c, -1).T.astype(np.float64)  # [P, C]
    iy = np.clip(cy.astype(int), 0, h - 1)
    ix = np.clip(cx.astype(int), 0, w - 1)
    centres_c = images01[:, iy, ix].T.astype(np.float64)
    centres_p = np.stack([cy, cx], 1)
    scale = (compactness / step) ** 2
    labels = np.zeros(h * w, np.int64)
    for _ in range(iterations):
        d = ((col[:, None, :] - centres_c[None]) ** 2).sum(-1) + scale * ((pos[:, None, :] - centres_p[None]) ** 2).sum(-1)
        labels = d.argmin(1)
        counts = np.bincount(labels, minlength=len(centres_c)).astype(np.float64)
        keep = counts > 0
        for j in range(c):
            centres_c[keep, j] = np.bincount(labels, weights=col[:, j], minlength=len(counts))[keep] / counts[keep]
        for j in range(2):
            centres_p[keep, j] = np.bincount(labels, weights=pos[:, j], minlength=len(counts))[keep] / counts[keep]
    _, labels = np.unique(labels, return_inverse=True)
    return labels.reshape(h, w).astype(np.int64)


def segments_for(model, x: torch.Tensor, kind: str, cells: int, n_segments: int) -> list[np.ndarray]:
    """One label map [H, W] per image: a grid of cells×cells patches, or SLIC superpixels."""
    n, c, h, w = x.shape
    if kind == "grid":
        g = grid_segments(h, w, cells)
        return [g] * n
    if kind == "superpixels":
        lo, hi = pixel_bounds(model, c)
        x01 = ((x - lo) / (hi - lo)).clamp(0, 1).numpy()
        return [superpixels(x01[i], n_segments) for i in range(n)]
    raise AttributionError(f"Unknown segmentation {kind!r}; expected 'grid' or 'superpixels'.")


def spread(values: np.ndarray, labels: np.ndarray, channels: int) -> np.ndarray:
    """One value per segment [M] -> float32 [C, H, W] (every pixel of a segment, every channel)."""
    per_pixel = np.asarray(values, np.float64)[labels]
    return np.broadcast_to(per_pixel[None], (channels, *labels.shape)).astype(np.float32)


def upsample_map(maps: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Coarse maps [N, h, w] -> [N, H, W] by bilinear interpolation (pixel centres aligned)."""
    if tuple(maps.shape[1:]) == (height, width):
        return maps
    return F.interpolate(maps[:, None].float(), size=(height, width), mode="bilinear", align_corners=False)[:, 0]
