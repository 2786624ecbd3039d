"""Quality metrics of attribution maps: faithfulness, shape, localisation against ground truth, sanity.

Conventions: the first axis of every map is the sample axis (pass a single map as ``a[None]``);
image maps [N, C, H, W] are reduced to one value per pixel by summing the channels
(:func:`pixel_map`) before anything is ranked or compared with a mask [N, H, W]. Functions of
one 1-D vector return a float, of a batch an array [N].

* Faithfulness (Petsiuk et al. 2018, RISE §4.1): :func:`deletion_curve` removes the pixels in
  order of attribution (highest first) and records the target's probability; the area under it
  (:func:`deletion_auc`) is low when the top pixels really matter. :func:`insertion_curve` starts
  from a blurred image and puts the pixels back; its area is high for a good map.
  :func:`pixel_flipping_curve` is the deletion curve towards black pixels (Bach et al. 2015;
  Quantus' PixelFlipping).
* Shape (Quantus definitions): :func:`sparseness` is the Gini index of |a| (Chalasani et al.
  2020), :func:`complexity` the entropy of |a|/Σ|a| (Bhatt et al. 2020).
* Ground truth (Arras et al. 2022, CLEVR-XAI): :func:`relevance_mass_accuracy` is the share of
  the positive relevance inside the mask; :func:`relevance_rank_accuracy` the share of the
  top-|mask| pixels inside it. :func:`random_map_baseline` gives both for a random map, the
  mask's area share.
* Sanity: :func:`model_randomisation` (Adebayo et al. 2018) and :func:`max_sensitivity` (Yeh et
  al. 2019).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from torch import nn

from ._image import gaussian_blur, pixel_bounds, pixel_range
from .base import AttributionError, Subject

# ---------------------------------------------------------------------------------------------- shape


def pixel_map(a) -> np.ndarray:
    """One value per unit: image maps [N, C, H, W] summed over channels to [N, H, W]; anything else as is."""
    a = np.asarray(a)
    return a.sum(1) if a.ndim == 4 else a


def _rows(a) -> tuple[np.ndarray, bool]:
    a = np.asarray(a, np.float64)
    if a.ndim == 0:
        raise AttributionError("Expected an attribution map, got a single number.")
    single = a.ndim == 1
    return (a[None] if single else a.reshape(len(a), -1)), single


def _out(values: np.ndarray, single: bool):
    return float(values[0]) if single else values


def sparseness(a) -> float | np.ndarray:
    """Gini index of |a| (Chalasani et al. 2020; Quantus' Sparseness): with the n values sorted
    ascending, G = Σᵢ (2i − n − 1)·a₍ᵢ₎ / (n·Σa). 0 for a uniform map, (n−1)/n when one value holds
    everything; higher is sparser. NaN for a map of zeros."""
    rows, single = _rows(a)
    v = np.sort(np.abs(rows), axis=1)
    n = v.shape[1]
    i = np.arange(1, n + 1)
    total = v.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = ((2 * i - n - 1) * v).sum(1) / (n * total)
    g[total == 0] = np.nan
    return _out(g, single)


def complexity(a) -> float | np.ndarray:
    """Entropy of the relevance distribution p = |a| / Σ|a| (Bhatt et al. 2020; Quantus'
    Complexity), −Σ p log p in nats: 0 when one value holds everything, log n for a uniform map;
    lower is simpler. NaN for a map of zeros."""
    rows, single = _rows(a)
    v = np.abs(rows)
    total = v.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = v / total
        h = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(1)
    h[total[:, 0] == 0] = np.nan
    return _out(h, single)


def _with_mask(a, mask) -> tuple[np.ndarray, np.ndarray, bool]:
    amap = pixel_map(np.asarray(a, np.float64))
    m = np.asarray(mask).astype(bool)
    if amap.shape != m.shape:
        raise AttributionError(f"The mask's shape {m.shape} does not match the attribution map's {amap.shape} "
                               "(image maps are compared per pixel, [N, H, W]).")
    rows, single = _rows(amap)
    return rows, m.reshape(rows.shape), single


def relevance_mass_accuracy(a, mask) -> float | np.ndarray:
    """Relevance mass accuracy (Arras et al. 2022): the share of the positive relevance that falls
    inside the ground-truth mask, Σ(a⁺·mask) / Σa⁺ with a⁺ = max(a, 0). 1 is perfect; a random
    map scores the mask's area share. NaN when the map has no positive relevance or the mask is empty."""
    rows, m, single = _with_mask(a, mask)
    pos = np.clip(rows, 0, None)
    total = pos.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (pos * m).sum(1) / total
    r[(total == 0) | (m.sum(1) == 0)] = np.nan
    return _out(r, single)


def relevance_rank_accuracy(a, mask) -> float | np.ndarray:
    """Relevance rank accuracy (Arras et al. 2022): with K = |mask|, the share of the K highest-
    attributed units that lie inside the mask. Ties at the K-th value are shared out in proportion
    (the expectation over a random tie-break), so a constant map scores the area share. NaN for an
    empty mask."""
    rows, m, single = _with_mask(a, mask)
    out = np.full(len(rows), np.nan)
    for i, (v, mk) in enumerate(zip(rows, m)):
        k = int(mk.sum())
        if k == 0:
            continue
        threshold = np.partition(v, len(v) - k)[len(v) - k]
        above = v > threshold
        tied = v == threshold
        slots = k - int(above.sum())
        inside = (above & mk).sum() + slots * (tied & mk).sum() / max(int(tied.sum()), 1)
        out[i] = inside / k
    return _out(out, single)


def random_map_baseline(mask) -> float | np.ndarray:
    """Relevance mass and rank accuracy of a random map: the mask's area share (in expectation)."""
    m = np.asarray(mask).astype(bool)
    rows, single = _rows(m)
    return _out(rows.mean(1), single)


# ---------------------------------------------------------------------------------------------- faithfulness
@dataclass
class Curve:
    """A perturbation curve: ``fractions`` [S+1] of units changed (0 to 1), ``scores`` [N, S+1]
    the target's probability after each step. ``kind``: "deletion", "insertion" or "pixel-flipping"."""

    kind: str
    fractions: np.ndarray
    scores: np.ndarray

    def auc(self) -> np.ndarray:
        """Area under each sample's curve by the trapezoid rule over the fraction axis (RISE §4.1)."""
        return np.trapezoid(self.scores, self.fractions, axis=1)


SUBSTRATES = ("zero", "black", "blur", "mean")


def _substrate(subject: Subject, kind: str, blur_sigma: float):
    if subject.kind == "image":
        x = subject.x
        if kind == "zero":
            return torch.zeros_like(x)
        if kind == "black":
            return pixel_bounds(subject.model, x.shape[1])[0].expand_as(x).clone()
        if kind == "blur":
            return gaussian_blur(x, blur_sigma)
        if kind == "mean":
            return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
        raise AttributionError(f"Unknown substrate {kind!r}; expected one of {', '.join(SUBSTRATES)}.")
    bg = subject.background
    if kind in ("zero", "black"):
        return np.zeros_like(subject.x_np)
    if kind in ("mean", "blur"):  # a table's "blurred" row is the background mean
        return np.broadcast_to(bg.mean(0), subject.x_np.shape).copy()
    raise AttributionError(f"Unknown substrate {kind!r}; expected one of {', '.join(SUBSTRATES)}.")


def _perturbation_curve(kind: str, model, x, attribution, target, step: int | None, substrate: str, blur_sigma: float,
                        insert: bool, background=None, batch_size: int | None = None) -> Curve:
    subject = Subject.build(model, x, target, background=background, batch_size=batch_size)
    amap = pixel_map(np.asarray(attribution, np.float64))
    want = (subject.n, *subject.x.shape[2:]) if subject.kind == "image" else tuple(subject.x_np.shape)
    if amap.shape != want:
        raise AttributionError(f"The attribution has shape {np.shape(attribution)}, which does not match x {tuple(np.shape(x))}.")
    n = subject.n
    units = int(np.prod(amap.shape[1:]))
    if step is None:
        step = subject.x.shape[-1] if subject.kind == "image" else 1
    if step < 1:
        raise AttributionError(f"step must be at least 1, got {step}.")
    n_steps = -(-units // step)
    # rank[i, u]: the position of unit u in sample i's order (most relevant first; NaN last)
    flat = np.nan_to_num(amap.reshape(n, units), nan=-np.inf)
    order = np.argsort(-flat, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(units)[None, :].repeat(n, 0), axis=1)
    start, end = (_substrate(subject, substrate, blur_sigma), subject.x) if insert else \
        (subject.x, _substrate(subject, substrate, blur_sigma))
    per = n_steps + 1
    scores = np.zeros((n, per))

    if subject.kind == "image":
        h, w = subject.x.shape[2:]
        rank_t = torch.from_numpy(rank.reshape(n, h, w))

        def build(s, e):
            r = torch.arange(s, e)
            i, t = r // per, r % per
            changed = (rank_t[i] < (t * step)[:, None, None]).unsqueeze(1)
            return torch.where(changed, end[i], start[i])
    else:
        def build(s, e):
            r = np.arange(s, e)
            i, t = r // per, r % per
            changed = rank[i] < (t * step)[:, None]
            return np.where(changed, end[i], start[i])

    def consume(s, e, out):
        r = np.arange(s, e)
        scores[r // per, r % per] = out

    subject.run_chunks(n * per, build, consume, probability=True, targets_of=lambda s, e: subject.targets[np.arange(s, e) // per])
    fractions = np.minimum(np.arange(per) * step, units) / units
    return Curve(kind, fractions, scores)


def deletion_curve(model, x, attribution, target=None, step: int | None = None, substrate: str = "zero",
                   blur_sigma: float = 5.0, background=None, batch_size: int | None = None) -> Curve:
    """The deletion curve (RISE §4.1): remove ``step`` units at a time, most relevant first, and
    record the target's probability. Removed pixels take the ``substrate`` value ("zero": 0 in the
    model's input space, as the RISE code does; "black", "blur", "mean"); table features take the
    background mean (or zero). ``step`` defaults to one image row of pixels (RISE uses 224 on
    224-pixel images) or one feature."""
    return _perturbation_curve("deletion", model, x, attribution, target, step, substrate, blur_sigma, False,
                               background, batch_size)


def insertion_curve(model, x, attribution, target=None, step: int | None = None, substrate: str = "blur",
                    blur_sigma: float = 5.0, background=None, batch_size: int | None = None) -> Curve:
    """The insertion curve (RISE §4.1): start from the substrate (a Gaussian blur of the image,
    σ = 5 px as in the RISE code; tables: the background mean) and insert ``step`` units at a time,
    most relevant first, recording the target's probability."""
    return _perturbation_curve("insertion", model, x, attribution, target, step, substrate, blur_sigma, True,
                               background, batch_size)


def pixel_flipping_curve(model, x, attribution, target=None, step: int | None = None, baseline: str = "black",
                         background=None, batch_size: int | None = None) -> Curve:
    """Pixel flipping (Bach et al. 2015; Samek et al. 2017 MoRF; Quantus' PixelFlipping): the
    deletion curve with the flipped pixels set to ``baseline`` (black by default)."""
    return _perturbation_curve("pixel-flipping", model, x, attribution, target, step, baseline, 5.0, False,
                               background, batch_size)


def deletion_auc(model, x, attribution, target=None, **kwargs) -> np.ndarray:
    """Area under the deletion curve per sample (lower is better); see :func:`deletion_curve`."""
    return deletion_curve(model, x, attribution, target, **kwargs).auc()


def insertion_auc(model, x, attribution, target=None, **kwargs) -> np.ndarray:
    """Area under the insertion curve per sample (higher is better); see :func:`insertion_curve`."""
    return insertion_curve(model, x, attribution, target, **kwargs).auc()


# ---------------------------------------------------------------------------------------------- sanity
def spearman_rows(a, b) -> np.ndarray:
    """Spearman rank correlation between matching rows of two batches of maps (flattened); NaN for a constant row."""
    ra, _ = _rows(pixel_map(np.asarray(a, np.float64)))
    rb, _ = _rows(pixel_map(np.asarray(b, np.float64)))
    out = np.full(len(ra), np.nan)
    for i in range(len(ra)):
        if np.ptp(ra[i]) > 0 and np.ptp(rb[i]) > 0 and np.isfinite(ra[i]).all() and np.isfinite(rb[i]).all():
            out[i] = stats.spearmanr(ra[i], rb[i]).statistic
    return out


def randomisable_layers(model: nn.Module) -> list[str]:
    """Names of the model's layers with parameters, from the output back to the input (Sequential
    and ModuleList children expanded, so every ViT block and ResNet block is its own layer)."""
    names: list[str] = []

    def walk(module: nn.Module, prefix: str):
        for name, child in module.named_children():
            full = f"{prefix}{name}"
            if isinstance(child, (nn.Sequential, nn.ModuleList)):
                walk(child, full + ".")
            elif any(True for _ in child.parameters()):
                names.append(full)

    walk(model, "")
    return names[::-1]


def _reinitialise(module: nn.Module) -> None:
    for sub in module.modules():
        reset = getattr(sub, "reset_parameters", None)
        if callable(reset):
            reset()


@dataclass
class RandomisationResult:
    """Similarity of the attributions before and after randomising the weights (Adebayo et al.
    2018). ``layers[k]``: what was randomised at step k (cascading: every layer down to it;
    independent: that layer alone; ["all layers"] without a cascade). ``similarity`` [L, N]:
    Spearman rank correlation of |pixel map| before and after. A faithful method changes a lot."""

    order: str
    layers: list[str]
    similarity: np.ndarray


def model_randomisation(model: nn.Module, x, target, method: str, params: dict | None = None, order: str = "cascading",
                        layers: int | None = None, seed: int = 0, background=None, batch_size: int | None = None,
                        reference=None) -> RandomisationResult:
    """The model-parameter randomisation check (Adebayo et al., NeurIPS 2018).

    The weights of a *copy* of ``model`` are re-initialised (each layer's ``reset_parameters``,
    seeded) from the output layer downwards, and the method's attribution for the same targets is
    compared with the original by the Spearman correlation of |pixel map|. ``order``: "cascading"
    (each step randomises one more layer), "independent" (one layer at a time) or "all" (every
    layer at once, a single step: the end of the cascade). ``layers``: how many layers from the top
    (default all). ``reference``: the original attribution when already computed."""
    from . import attribute

    if not isinstance(model, nn.Module):
        raise AttributionError("The randomisation check re-initialises weights and needs a torch model.")
    if order not in ("cascading", "independent", "all"):
        raise AttributionError(f"order must be 'cascading', 'independent' or 'all', got {order!r}.")
    params = dict(params or {})
    subject = Subject.build(model, x, target, background=background, batch_size=batch_size)
    targets = subject.targets
    names = randomisable_layers(model)
    if layers is not None:
        names = names[:max(1, int(layers))]
    if not names:
        raise AttributionError("The model has no layers with parameters to randomise.")
    original = reference if reference is not None else attribute(model, x, targets, method, background=background,
                                                                 batch_size=batch_size, **params)
    abs_original = np.abs(pixel_map(original))
    steps = [names] if order == "all" else [names[:k + 1] if order == "cascading" else [names[k]] for k in range(len(names))]
    sims = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        copy_model = copy.deepcopy(model)
        pristine = copy.deepcopy(model.state_dict()) if order == "independent" else None
        done: set[str] = set()
        for chosen in steps:
            if order == "independent":
                copy_model.load_state_dict(pristine)
                done = set()
            modules = dict(copy_model.named_modules())
            for name in chosen:
                if name not in done:
                    _reinitialise(modules[name])
                    done.add(name)
            randomised = attribute(copy_model, x, targets, method, background=background, batch_size=batch_size, **params)
            sims.append(spearman_rows(abs_original, np.abs(pixel_map(randomised))))
    labels = ["all layers"] if order == "all" else [s[-1] if order == "cascading" else s[0] for s in steps]
    return RandomisationResult(order, labels, np.stack(sims))


def max_sensitivity(model, x, target, method: str, params: dict | None = None, radius: float = 0.02, samples: int = 10,
                    seed: int = 0, background=None, batch_size: int | None = None, reference=None) -> np.ndarray:
    """Max-sensitivity (Yeh et al., NeurIPS 2019; Quantus' MaxSensitivity): the largest relative
    change of the attribution under small input noise, max_δ ‖φ(x+δ) − φ(x)‖ / ‖φ(x)‖, over
    ``samples`` draws of δ uniform in the L∞ ball of ``radius`` × the input's value range (per
    channel for images, per feature of the background rows for tables). Same targets and method
    seed throughout; lower is more robust. Costs ``samples`` runs of the method."""
    from . import attribute

    params = dict(params or {})
    subject = Subject.build(model, x, target, background=background, batch_size=batch_size)
    targets = subject.targets
    base = reference if reference is not None else attribute(model, x, targets, method, background=background,
                                                             batch_size=batch_size, **params)
    base_rows = np.asarray(base, np.float64).reshape(subject.n, -1)
    norm = np.linalg.norm(base_rows, axis=1)
    if subject.kind == "image":
        span = pixel_range(subject.model, subject.x.shape[1]).numpy()
    else:
        span = np.ptp(subject.background, axis=0)[None, :]
    rng = np.random.default_rng(int(seed))
    x_arr = subject.x.numpy() if isinstance(subject.x, torch.Tensor) else subject.x_np
    worst = np.zeros(subject.n)
    for _ in range(int(samples)):
        delta = rng.uniform(-1.0, 1.0, size=x_arr.shape) * radius * span
        xp = (x_arr + delta).astype(x_arr.dtype)
        if isinstance(subject.x, torch.Tensor) and subject.kind == "image":
            xp = torch.from_numpy(xp)
        other = attribute(model, xp, targets, method, background=background, batch_size=batch_size, **params)
        change = np.linalg.norm(np.asarray(other, np.float64).reshape(subject.n, -1) - base_rows, axis=1)
        worst = np.maximum(worst, change)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, worst / norm, np.nan)


#: How each metric ranks methods: +1 higher is better, −1 lower is better.
DIRECTION: dict[str, int] = {
    "deletion_auc": -1, "insertion_auc": +1, "sparseness": +1, "complexity": -1, "relevance_mass": +1,
    "relevance_rank": +1, "randomisation_similarity": -1, "max_sensitivity": -1,
}

__all__ = ["Curve", "DIRECTION", "RandomisationResult", "complexity", "deletion_auc", "deletion_curve", "insertion_auc",
           "insertion_curve", "max_sensitivity", "model_randomisation", "pixel_flipping_curve", "pixel_map",
           "random_map_baseline", "randomisable_layers", "relevance_mass_accuracy", "relevance_rank_accuracy",
           "sparseness", "spearman_rows"]
