"""The Shapes world: a procedural image generator with named generative factors.

Every image is drawn from an explicit causal model whose mechanisms are named
after the factor columns they produce:

=============  =====================================================  ==========================
mechanism      distribution (defaults)                                factor columns
=============  =====================================================  ==========================
``class``      categorical prior, uniform over the 6 ID shapes        ``label``, ``class_name``
``colour``     object hue | class: uniform (no dependence)            ``hue``, ``sat``, ``val``
``background`` 60% plain, 40% linear gradient; random dim/bright tone ``bg_type``, ``bg_hue``, ``bg_val``
``size``       radius uniform in [0.18, 0.30] of the image side       ``size``
``position``   centre uniform where the shape fits                    ``x``, ``y``
``rotation``   uniform angle in [0, 2π)                               ``rotation``
``marker``     corner square, P(m=1 | y) = ½ + ½·ρ·(±1) (ρ = 0.6)     ``marker``
``noise``      pixel noise, σ = 8 (of 255), near-Gaussian                   ``noise``
``distractor`` off (P = 0); when on, the next class's shape is drawn  ``distractor``
=============  =====================================================  ==========================

The ``shape`` column names the shape actually drawn: the class's own shape, or with the
distractor on the shape of class (y + 1) mod K.

The ``suppressor`` preset (after Wilming et al., ICML 2023) turns the distractor on with P = ½
and makes the marker show it (``marker_tracks_distractor``) instead of depending on the class:
the marker is independent of the label, yet the drawn shape alone identifies the class only up
to two candidates, and the marker is what tells them apart. A model trained on this world must
use the marker, a feature with no statistical relation to the label (a suppressor), so a
faithful attribution puts importance on it while the ground-truth mask (the object) does not
contain it. In that world the marker's parent is the distractor, not the class.

The object colour is always on the other side of mid-grey from the background
so that every shape is visible (value contrast ≥ 0.3).

Shapes are drawn as signed distance functions; a pixel's coverage is
``clip(0.5 - d, 0, 1)`` with ``d`` the signed distance in pixels, which gives
one pixel of anti-aliasing. Rasterisation is a numba kernel (``cache=True``).
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from numba import njit

from .dataset import DataError, Dataset

ID_CLASSES = ["circle", "square", "triangle", "star", "plus", "bar"]
NEAR_OOD_CLASSES = ["ring", "crescent", "arrow", "hexagon"]
ALL_SHAPES = ID_CLASSES + NEAR_OOD_CLASSES
BACKGROUNDS = ["plain", "gradient", "stripes", "blotches", "checker"]
MECHANISMS = ["class", "colour", "background", "size", "position", "rotation", "marker", "noise", "distractor"]
MECHANISM_COLUMNS = {
    "class": ["label"],
    "colour": ["hue", "sat", "val"],
    "background": ["bg_type", "bg_hue", "bg_val"],
    "size": ["size"],
    "position": ["x", "y"],
    "rotation": ["rotation"],
    "marker": ["marker"],
    "noise": ["noise"],
    "distractor": ["distractor"],
}
# Parents of each mechanism in the causal graph (used by shift attribution).
MECHANISM_PARENTS = {
    "class": [],
    "colour": ["class"],
    "background": [],
    "size": [],
    "position": ["size"],
    "rotation": [],
    "marker": ["class"],
    "noise": [],
    "distractor": [],
}
# Mechanisms that are off in the default world (all-zero factor column); shift attribution leaves them
# out of the graph unless a dataset turns them on. When the distractor is on, the suppressor preset
# makes the marker follow it, so the marker gains it as a parent.
OPTIONAL_MECHANISMS = ["distractor"]
MECHANISM_OPTIONAL_PARENTS = {"marker": ["distractor"]}

# Shape codes used by the kernel: analytic shapes first, then polygons.
_CIRCLE, _RING, _CRESCENT, _POLY, _NONE = 0, 1, 2, 3, -1


def _regular(n: int, radius: float = 1.0, phase: float = math.pi / 2) -> list[tuple[float, float]]:
    return [(radius * math.cos(phase + 2 * math.pi * k / n), radius * math.sin(phase + 2 * math.pi * k / n)) for k in range(n)]


def _star(points: int = 5, outer: float = 1.0, inner: float = 0.45) -> list[tuple[float, float]]:
    out = []
    for k in range(2 * points):
        r = outer if k % 2 == 0 else inner
        a = math.pi / 2 + math.pi * k / points
        out.append((r * math.cos(a), r * math.sin(a)))
    return out


_PLUS_W = 0.32
_POLYGONS = {
    "square": [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)],
    "triangle": _regular(3, 1.05),
    "star": _star(),
    "plus": [(-_PLUS_W, -1), (_PLUS_W, -1), (_PLUS_W, -_PLUS_W), (1, -_PLUS_W), (1, _PLUS_W), (_PLUS_W, _PLUS_W),
             (_PLUS_W, 1), (-_PLUS_W, 1), (-_PLUS_W, _PLUS_W), (-1, _PLUS_W), (-1, -_PLUS_W), (-_PLUS_W, -_PLUS_W)],
    "bar": [(-1.0, -0.28), (1.0, -0.28), (1.0, 0.28), (-1.0, 0.28)],
    "arrow": [(-1, -0.2), (0.15, -0.2), (0.15, -0.6), (1, 0), (0.15, 0.6), (0.15, 0.2), (-1, 0.2)],
    "hexagon": _regular(6, 0.95),
}


def _shape_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kernel tables: kind per shape, and polygon vertices packed with offsets."""
    kinds = np.zeros(len(ALL_SHAPES), np.int64)
    offsets = np.zeros(len(ALL_SHAPES) + 1, np.int64)
    verts: list[tuple[float, float]] = []
    for i, name in enumerate(ALL_SHAPES):
        offsets[i] = len(verts)
        if name == "circle":
            kinds[i] = _CIRCLE
        elif name == "ring":
            kinds[i] = _RING
        elif name == "crescent":
            kinds[i] = _CRESCENT
        else:
            kinds[i] = _POLY
            verts.extend(_POLYGONS[name])
    offsets[-1] = len(verts)
    # offsets[i+1] is not the end of shape i when shape i+1 is analytic; store ends explicitly.
    ends = np.zeros(len(ALL_SHAPES), np.int64)
    for i, name in enumerate(ALL_SHAPES):
        ends[i] = offsets[i] + (len(_POLYGONS[name]) if name in _POLYGONS else 0)
    table = np.stack([kinds, offsets[:-1], ends], axis=1)
    return table, np.asarray(verts, np.float64).reshape(-1, 2), np.asarray([len(ALL_SHAPES)])


_SHAPE_TABLE, _VERTS, _ = _shape_tables()


@njit(cache=True, fastmath=False)
def _poly_sdf(px: float, py: float, verts: np.ndarray, start: int, end: int) -> float:
    """Signed distance to a simple polygon (negative inside)."""
    dx = px - verts[start, 0]
    dy = py - verts[start, 1]
    d = dx * dx + dy * dy
    s = 1.0
    j = end - 1
    for i in range(start, end):
        ex = verts[j, 0] - verts[i, 0]
        ey = verts[j, 1] - verts[i, 1]
        wx = px - verts[i, 0]
        wy = py - verts[i, 1]
        t = (wx * ex + wy * ey) / (ex * ex + ey * ey)
        t = min(max(t, 0.0), 1.0)
        bx = wx - ex * t
        by = wy - ey * t
        d = min(d, bx * bx + by * by)
        c1 = py >= verts[i, 1]
        c2 = py < verts[j, 1]
        c3 = ex * wy > ey * wx
        if (c1 and c2 and c3) or ((not c1) and (not c2) and (not c3)):
            s = -s
        j = i
    return s * math.sqrt(d)


@njit(cache=True)
def _shape_sdf(kind: int, start: int, end: int, verts: np.ndarray, qx: float, qy: float) -> float:
    if kind == 0:
        return math.sqrt(qx * qx + qy * qy) - 1.0
    if kind == 1:
        return abs(math.sqrt(qx * qx + qy * qy) - 0.72) - 0.24
    if kind == 2:
        a = math.sqrt(qx * qx + qy * qy) - 1.0
        bx = qx - 0.5
        b = math.sqrt(bx * bx + qy * qy) - 0.82
        return max(a, -b)
    return _poly_sdf(qx, qy, verts, start, end)


_U13 = np.uint64(13)
_U7 = np.uint64(7)
_U17 = np.uint64(17)
_MASK16 = np.uint64(0xFFFF)
_U16 = np.uint64(16)
_U32 = np.uint64(32)
_U48 = np.uint64(48)


@njit(cache=True)
def _xorshift(x):
    x ^= x << _U13
    x ^= x >> _U7
    x ^= x << _U17
    return x


@njit(cache=True)
def _approx_normal(x):
    """One xorshift64 step -> an approximately standard normal value (Irwin-Hall sum of 4 uniforms).

    Bounded at ±3.46σ; pixel noise needs no heavier tails, and this is ~10x faster than
    numba's np.random.normal, which dominated the rasteriser's time.
    """
    x = _xorshift(x)
    s = float(x & _MASK16) + float((x >> _U16) & _MASK16) + float((x >> _U32) & _MASK16) + float(x >> _U48)
    return x, (s / 65535.0 - 2.0) * 1.7320508075688772


@njit(cache=True)
def _background(t: int, x: float, y: float, size: int, base: np.ndarray, alt: np.ndarray, phase: float, freq: float,
                out: np.ndarray) -> None:
    u = x / size
    v = y / size
    if t == 0:  # plain
        w = 0.0
    elif t == 1:  # linear gradient along a random direction
        w = 0.5 + 0.5 * (math.cos(phase) * (u - 0.5) + math.sin(phase) * (v - 0.5))
    elif t == 2:  # stripes
        w = 0.5 + 0.5 * math.sin(2 * math.pi * freq * (math.cos(phase) * u + math.sin(phase) * v))
    elif t == 3:  # blotches: a sum of two low-frequency waves
        w = 0.5 + 0.25 * math.sin(2 * math.pi * 1.5 * u + phase) + 0.25 * math.sin(2 * math.pi * 1.7 * v + 2 * phase)
    else:  # checker
        cu = int(math.floor(u * freq))
        cv = int(math.floor(v * freq))
        w = 1.0 if (cu + cv) % 2 == 0 else 0.0
    for c in range(3):
        out[c] = base[c] * (1.0 - w) + alt[c] * w


@njit(cache=True)
def render_batch(
    size: int,
    shape_idx: np.ndarray,  # [N] index into ALL_SHAPES, -1 for no object
    obj_rgb: np.ndarray,  # [N,3] in [0,1]
    bg_type: np.ndarray,  # [N]
    bg_rgb: np.ndarray,  # [N,3]
    bg_alt: np.ndarray,  # [N,3] second background colour (gradient end, stripe colour)
    bg_phase: np.ndarray,  # [N]
    bg_freq: np.ndarray,  # [N]
    radius: np.ndarray,  # [N] in pixels
    cx: np.ndarray,  # [N] pixels
    cy: np.ndarray,  # [N] pixels
    rotation: np.ndarray,  # [N] radians
    marker: np.ndarray,  # [N] 0/1
    marker_rgb: np.ndarray,  # [N,3]
    noise: np.ndarray,  # [N] std in 0..255 units
    seeds: np.ndarray,  # [N] per-image noise seed
    table: np.ndarray,
    verts: np.ndarray,
    images: np.ndarray,  # out [N,size,size,3] uint8
    obj_mask: np.ndarray,  # out [N,size,size] bool
    marker_mask: np.ndarray,  # out [N,size,size] bool
) -> None:
    n = shape_idx.shape[0]
    msize = max(3, size // 12)
    moff = max(1, size // 32)
    col = np.zeros(3)
    for i in range(n):
        state = np.uint64(seeds[i]) * np.uint64(2654435761) + np.uint64(88172645463325252)
        si = shape_idx[i]
        r = radius[i]
        ca = math.cos(rotation[i])
        sa = math.sin(rotation[i])
        reach = 1.15 * r + 1.5
        x0 = int(max(0.0, math.floor(cx[i] - reach)))
        x1 = int(min(size - 1.0, math.ceil(cx[i] + reach)))
        y0 = int(max(0.0, math.floor(cy[i] - reach)))
        y1 = int(min(size - 1.0, math.ceil(cy[i] + reach)))
        kind = 0
        start = 0
        end = 0
        if si >= 0:
            kind = table[si, 0]
            start = table[si, 1]
            end = table[si, 2]
        for yy in range(size):
            for xx in range(size):
                px = xx + 0.5
                py = yy + 0.5
                _background(bg_type[i], px, py, size, bg_rgb[i], bg_alt[i], bg_phase[i], bg_freq[i], col)
                cover = 0.0
                if si >= 0 and x0 <= xx <= x1 and y0 <= yy <= y1:
                    dx = px - cx[i]
                    dy = py - cy[i]
                    # rotate into the shape's frame; image y points down, so flip it
                    qx = (ca * dx + sa * dy) / r
                    qy = (sa * dx - ca * dy) / r
                    d = _shape_sdf(kind, start, end, verts, qx, qy) * r
                    cover = min(max(0.5 - d, 0.0), 1.0)
                if cover > 0.0:
                    for c in range(3):
                        col[c] = col[c] * (1.0 - cover) + obj_rgb[i, c] * cover
                obj_mask[i, yy, xx] = cover >= 0.5
                in_marker = marker[i] == 1 and moff <= xx < moff + msize and moff <= yy < moff + msize
                if in_marker:
                    for c in range(3):
                        col[c] = marker_rgb[i, c]
                marker_mask[i, yy, xx] = in_marker
                for c in range(3):
                    val = col[c] * 255.0
                    if noise[i] > 0:
                        state, z = _approx_normal(state)
                        val += z * noise[i]
                    val = min(max(val + 0.5, 0.0), 255.0)
                    images[i, yy, xx, c] = np.uint8(val)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB, all in [0,1]."""
    h = np.mod(h, 1.0) * 6.0
    i = np.floor(h).astype(int) % 6
    f = h - np.floor(h)
    p = v * (1 - s)
    q = v * (1 - s * f)
    t = v * (1 - s * (1 - f))
    choices = [
        np.stack([v, t, p], 1), np.stack([q, v, p], 1), np.stack([p, v, t], 1),
        np.stack([p, q, v], 1), np.stack([t, p, v], 1), np.stack([v, p, q], 1),
    ]
    out = np.zeros((len(h), 3))
    for k in range(6):
        out[i == k] = choices[k][i == k]
    return out


@dataclass(frozen=True)
class ShapesConfig:
    """Parameters of every mechanism of the Shapes world. Change one field to shift one mechanism."""

    classes: tuple[str, ...] = tuple(ID_CLASSES)
    class_prior: tuple[float, ...] | None = None  # None = uniform
    colour_given_class: bool = False  # True: each class has its own hue band
    hue_jitter: float = 0.06
    bg_types: tuple[float, ...] = (0.6, 0.4, 0.0, 0.0, 0.0)  # P(plain, gradient, stripes, blotches, checker)
    bg_bright_prob: float = 0.5  # P(background is bright)
    size_range: tuple[float, float] = (0.18, 0.30)  # radius as a fraction of the side
    marker_corr: float = 0.6  # ρ: P(marker | y) = ½ + ½ρ(+1 for even classes, -1 for odd)
    noise: float = 8.0
    rotation: bool = True
    distractor_prob: float = 0.0  # P(distractor on): then the shape of class (y + 1) mod K is drawn
    marker_tracks_distractor: float | None = None  # q: the marker equals the distractor w.p. q (ignores the class)


SHIFT_PRESETS: dict[str, tuple[dict, list[str], str]] = {
    "background": ({"bg_types": (0.0, 0.0, 0.5, 0.5, 0.0)}, ["background"],
                   "Backgrounds become striped or blotchy instead of plain or gradient."),
    "label-prior": ({"class_prior": (0.35, 0.25, 0.15, 0.1, 0.1, 0.05)}, ["class"],
                    "Class frequencies become skewed (35% circles down to 5% bars)."),
    "colour-given-class": ({"colour_given_class": True}, ["colour"],
                           "Each class gets its own hue band instead of a random hue."),
    "marker-flip": ({"marker_corr": -0.6}, ["marker"],
                    "The corner marker's correlation with the class flips sign."),
    "size": ({"size_range": (0.10, 0.16)}, ["size"],
             "Objects become small (radius 10-16% of the side instead of 18-30%)."),
    "background+size": ({"bg_types": (0.0, 0.0, 0.5, 0.5, 0.0), "size_range": (0.10, 0.16)}, ["background", "size"],
                        "Two mechanisms at once: textured backgrounds and small objects."),
    "suppressor": ({"distractor_prob": 0.5, "marker_tracks_distractor": 1.0}, ["distractor", "marker"],
                   "The marker becomes a suppressor (Wilming et al. 2023): half the images show the next class's "
                   "shape, and exactly those carry the marker, so the marker is independent of the label but a "
                   "model needs it to read the class."),
}


def shift_presets() -> list[str]:
    return list(SHIFT_PRESETS)


def describe_shift(name: str) -> str:
    return SHIFT_PRESETS[name][2]


def apply_shift(config: ShapesConfig, shift: str | None) -> tuple[ShapesConfig, list[str]]:
    if shift is None or shift == "none":
        return config, []
    if shift not in SHIFT_PRESETS:
        raise DataError(f"Unknown shift preset '{shift}'. Expected one of: {', '.join(SHIFT_PRESETS)}.")
    changes, mechanisms, _ = SHIFT_PRESETS[shift]
    return replace(config, **changes), list(mechanisms)


def split_seed(seed: int, split: str, tag: str = "") -> int:
    """Independent, stable seeds for each (seed, split) so splits never overlap."""
    return zlib.crc32(f"{split}|{tag}|{seed}".encode()) & 0x7FFFFFFF


def sample_factors(n: int, config: ShapesConfig, rng: np.random.Generator, image_size: int) -> pd.DataFrame:
    """Draw the factor table of n images, one mechanism at a time."""
    k = len(config.classes)
    prior = np.full(k, 1.0 / k) if config.class_prior is None else np.asarray(config.class_prior, float)
    if len(prior) != k or np.any(prior < 0) or not np.isclose(prior.sum(), 1.0):
        raise DataError(f"class_prior must be {k} non-negative numbers summing to 1, got {config.class_prior}.")
    label = rng.choice(k, size=n, p=prior)
    # background
    bg_p = np.asarray(config.bg_types, float)
    bg_type = rng.choice(len(BACKGROUNDS), size=n, p=bg_p / bg_p.sum())
    bright = rng.random(n) < config.bg_bright_prob
    bg_val = np.where(bright, rng.uniform(0.7, 0.95, n), rng.uniform(0.08, 0.35, n))
    bg_hue = rng.random(n)
    # colour | class; value on the opposite side of mid-grey for contrast
    if config.colour_given_class:
        hue = (label / k + rng.normal(0, config.hue_jitter, n)) % 1.0
    else:
        hue = rng.random(n)
    sat = rng.uniform(0.5, 1.0, n)
    val = np.where(bright, rng.uniform(0.1, 0.4, n), rng.uniform(0.7, 1.0, n))
    # geometry
    lo, hi = config.size_range
    size = rng.uniform(lo, hi, n)
    r = size * image_size
    margin = 1.05 * r + 1
    x = margin + rng.random(n) * np.maximum(image_size - 2 * margin, 0)
    y = margin + rng.random(n) * np.maximum(image_size - 2 * margin, 0)
    rotation = rng.uniform(0, 2 * np.pi, n) if config.rotation else np.zeros(n)
    # marker | class
    sign = np.where(label % 2 == 0, 1.0, -1.0)
    p_marker = np.clip(0.5 + 0.5 * config.marker_corr * sign, 0, 1)
    u_marker = rng.random(n)
    marker = (u_marker < p_marker).astype(np.int64)
    # distractor: drawn after every other mechanism, and only when on, so the default world is unchanged
    if not 0.0 <= config.distractor_prob <= 1.0:
        raise DataError(f"distractor_prob must be a probability in [0, 1], got {config.distractor_prob}.")
    distractor = np.zeros(n, np.int64)
    if config.distractor_prob > 0:
        distractor = (rng.random(n) < config.distractor_prob).astype(np.int64)
    if config.marker_tracks_distractor is not None:
        q = float(config.marker_tracks_distractor)
        if not 0.0 <= q <= 1.0:
            raise DataError(f"marker_tracks_distractor must be a probability in [0, 1], got {q}.")
        # the marker's own uniform draw decides agreement, so the marker stays independent of the class
        marker = np.where(u_marker < q, distractor, 1 - distractor).astype(np.int64)
    shape = np.asarray(config.classes)[(label + distractor) % k]
    return pd.DataFrame({
        "label": label.astype(np.int64),
        "class_name": np.asarray(config.classes)[label],
        "hue": hue, "sat": sat, "val": val,
        "bg_type": np.asarray(BACKGROUNDS)[bg_type], "bg_hue": bg_hue, "bg_val": bg_val,
        "size": size, "x": x / image_size, "y": y / image_size, "rotation": rotation,
        "marker": marker,
        "noise": np.full(n, float(config.noise)),
        "distractor": distractor,
        "shape": shape,
    })


def render_factors(factors: pd.DataFrame, image_size: int, seed: int,
                   bg_phase: np.ndarray | None = None, bg_freq: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rasterise a factor table; returns images uint8 [N,S,S,3], object and marker masks."""
    if not 16 <= image_size <= 512:
        raise DataError(f"image_size must be between 16 and 512, got {image_size}.")
    n = len(factors)
    rng = np.random.default_rng(split_seed(seed, "render"))
    shape_lookup = {s: i for i, s in enumerate(ALL_SHAPES)}
    drawn = factors["shape"] if "shape" in factors else factors["class_name"]  # the distractor may draw another shape
    shape_idx = np.array([shape_lookup.get(c, -1) for c in drawn], np.int64)
    obj = _hsv_to_rgb(factors["hue"].to_numpy(), factors["sat"].to_numpy(), factors["val"].to_numpy())
    bg_val = factors["bg_val"].to_numpy()
    bg_sat = np.full(n, 0.35)
    bg = _hsv_to_rgb(factors["bg_hue"].to_numpy(), bg_sat, bg_val)
    # second background colour: same hue, value pulled towards mid-grey but staying on its side
    alt_val = np.where(bg_val > 0.5, bg_val - 0.2, bg_val + 0.15)
    bg_alt = _hsv_to_rgb((factors["bg_hue"].to_numpy() + 0.1) % 1.0, bg_sat, alt_val)
    types = np.array([BACKGROUNDS.index(t) for t in factors["bg_type"]], np.int64)
    if bg_phase is None:
        bg_phase = rng.uniform(0, 2 * np.pi, n)
    if bg_freq is None:
        bg_freq = rng.uniform(3, 7, n)
    marker_rgb = np.where((bg_val > 0.5)[:, None], np.array([[0.9, 0.1, 0.1]]) * 0.6, np.array([[1.0, 0.3, 0.3]]))
    images = np.empty((n, image_size, image_size, 3), np.uint8)
    obj_mask = np.empty((n, image_size, image_size), np.bool_)
    marker_mask = np.empty((n, image_size, image_size), np.bool_)
    seeds = rng.integers(0, 2**31 - 1, n)
    render_batch(
        image_size, shape_idx, obj, types, bg, bg_alt, np.asarray(bg_phase, float), np.asarray(bg_freq, float),
        factors["size"].to_numpy() * image_size, factors["x"].to_numpy() * image_size, factors["y"].to_numpy() * image_size,
        factors["rotation"].to_numpy(), factors["marker"].to_numpy().astype(np.int64), marker_rgb,
        factors["noise"].to_numpy().astype(float), seeds, _SHAPE_TABLE, _VERTS, images, obj_mask, marker_mask,
    )
    return images, obj_mask, marker_mask


@dataclass
class ShapesWorld:
    """Generator of Shapes datasets. ``generate`` is deterministic in (n, seed, split)."""

    config: ShapesConfig = field(default_factory=ShapesConfig)
    image_size: int = 64

    def generate(self, n: int, seed: int = 0, split: str = "test", name: str = "shapes",
                 changed: list[str] | None = None) -> Dataset:
        if n < 0:
            raise DataError(f"n must be non-negative, got {n}.")
        if not 32 <= self.image_size <= 224:
            raise DataError(f"Shapes images must be 32 to 224 pixels wide, got {self.image_size}.")
        rng = np.random.default_rng(split_seed(seed, split, name))
        factors = sample_factors(n, self.config, rng, self.image_size)
        images, obj_mask, marker_mask = render_factors(factors, self.image_size, split_seed(seed, split, name + "/px"))
        return Dataset(
            name=name, kind="image", labels=factors["label"].to_numpy().astype(np.int64),
            class_names=list(self.config.classes), images=images, factors=factors,
            masks={"object": obj_mask, "marker": marker_mask}, changed_mechanisms=list(changed or []),
            params={"n": n, "seed": seed, "split": split, "image_size": self.image_size, "config": repr(self.config)},
        )


def load_shapes(split: str = "test", n: int | None = None, seed: int = 0, shift: str | None = None,
                image_size: int = 64, **config_overrides) -> Dataset:
    config, changed = apply_shift(ShapesConfig(**config_overrides), shift)
    n = 1000 if n is None else n
    ds = ShapesWorld(config, image_size).generate(n, seed=seed, split=split, name="shapes", changed=changed)
    ds.params["shift"] = shift
    return ds


def load_near_ood(split: str = "test", n: int | None = None, seed: int = 0, image_size: int = 64, **overrides) -> Dataset:
    """Held-out shapes (ring, crescent, arrow, hexagon) drawn by the ID mechanisms otherwise."""
    config = replace(ShapesConfig(**overrides), classes=tuple(NEAR_OOD_CLASSES), class_prior=None)
    ds = ShapesWorld(config, image_size).generate(1000 if n is None else n, seed=seed, split=split, name="shapes-near-ood")
    return ds


def load_textures(split: str = "test", n: int | None = None, seed: int = 0, image_size: int = 64, **_) -> Dataset:
    """Far-OOD: stripe, checker and blotch textures with no object."""
    n = 1000 if n is None else n
    rng = np.random.default_rng(split_seed(seed, split, "textures"))
    cfg = ShapesConfig(bg_types=(0.0, 0.0, 0.4, 0.2, 0.4))
    factors = sample_factors(n, cfg, rng, image_size)
    factors["class_name"] = "none"
    factors["shape"] = "none"
    factors["label"] = -1
    factors["marker"] = 0
    freq = rng.uniform(3, 9, n)
    images, obj_mask, marker_mask = render_factors(factors, image_size, split_seed(seed, split, "textures/px"), bg_freq=freq)
    return Dataset(name="textures", kind="image", labels=np.full(n, -1, np.int64), class_names=[],
                   images=images, factors=factors, masks={"object": obj_mask, "marker": marker_mask},
                   params={"n": n, "seed": seed, "split": split, "image_size": image_size})


def load_noise(split: str = "test", n: int | None = None, seed: int = 0, image_size: int = 64, **_) -> Dataset:
    """Far-OOD: half i.i.d. uniform pixels, half smooth colour noise (upsampled coarse noise)."""
    n = 1000 if n is None else n
    rng = np.random.default_rng(split_seed(seed, split, "noise"))
    half = n // 2
    uniform = rng.integers(0, 256, size=(half, image_size, image_size, 3), dtype=np.uint8)
    coarse = rng.random((n - half, 8, 8, 3))
    reps = -(-image_size // 8)
    smooth = np.kron(coarse, np.ones((1, reps, reps, 1)))[:, :image_size, :image_size]
    smooth = np.clip(smooth * 255 + rng.normal(0, 8, smooth.shape), 0, 255).astype(np.uint8)
    images = np.concatenate([uniform, smooth])[rng.permutation(n)]
    return Dataset(name="noise", kind="image", labels=np.full(n, -1, np.int64), class_names=[], images=images,
                   params={"n": n, "seed": seed, "split": split, "image_size": image_size})
