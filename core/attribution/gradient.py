"""Gradient methods: saliency, gradient × input, Integrated Gradients, SmoothGrad and VarGrad.

They need a differentiable torch model and work on images [N, C, H, W] and on table rows
[N, F] alike; every one attributes the target's logit and keeps the input's shape (channels
included).
"""
from __future__ import annotations

import numpy as np
import torch

from ._image import BASELINE_HELP, image_baseline, pixel_range
from .base import AttributionError, ParamSpec, PassEstimate, Subject, register, seed_param

IG_RULES = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")
BASELINES = ("zero", "black", "blur", "noise", "mean")


def _one_pass(facts, params) -> PassEstimate:
    return PassEstimate(forward=1, backward=1)


def _plain_gradients(subject: Subject) -> torch.Tensor:
    x = subject.x
    out = torch.empty_like(x)
    for s, e, g in subject.iter_gradients(len(x), lambda s, e: x[s:e], lambda s, e: subject.targets[s:e]):
        out[s:e] = g
    return out


def _values(subject: Subject, t: torch.Tensor) -> np.ndarray:
    """Images stay float32; table rows are returned as float64 like every table method."""
    arr = t.detach().numpy()
    return arr.astype(np.float32) if subject.kind == "image" else arr.astype(np.float64)


@register("saliency", "Saliency", "gradient", {"gradients"}, "Simonyan, Vedaldi & Zisserman, ICLR workshop 2014",
          inputs=("image", "table"), cost=_one_pass)
def saliency(subject: Subject, params: dict):
    """Saliency map: the absolute gradient |∂f_c/∂x| of the target logit f_c with respect to
    every input value (channels kept). One forward and one backward pass per sample."""
    return _values(subject, _plain_gradients(subject).abs()), {}


@register("grad-x-input", "Gradient × input", "gradient", {"gradients"}, "Shrikumar et al., arXiv 1605.01713 (2016)",
          inputs=("image", "table"), cost=_one_pass)
def gradient_x_input(subject: Subject, params: dict):
    """Gradient × input: x ⊙ ∂f_c/∂x. For a linear model f = w·x + b it is exactly w ⊙ x, the
    contribution of each input to the logit. One forward and one backward pass per sample."""
    return _values(subject, subject.x * _plain_gradients(subject)), {}


# ---------------------------------------------------------------------------------------------- baselines
def baseline_of(subject: Subject, kind: str, blur_sigma: float, seed: int) -> torch.Tensor:
    """The IG reference input for every sample, in the model's input space."""
    x = subject.x
    if subject.kind == "image":
        return image_baseline(subject.model, x, kind, blur_sigma, seed)
    bg = torch.tensor(subject.background, dtype=torch.float32)
    if kind in ("black", "zero"):
        return torch.zeros_like(x)
    if kind == "mean":
        return bg.mean(0, keepdim=True).expand_as(x).clone()
    if kind == "noise":
        g = torch.Generator().manual_seed(int(seed))
        lo, hi = bg.min(0).values, bg.max(0).values
        return lo + torch.rand(x.shape, generator=g) * (hi - lo)
    raise AttributionError(f"The '{kind}' baseline applies to images only; for table rows use 'zero', 'mean' or 'noise'.")


def ig_alphas(steps: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Nodes α_k in [0, 1] and weights w_k of the path integral ∫₀¹ g(α) dα ≈ Σ_k w_k g(α_k).

    Gauss–Legendre: the Legendre nodes on [-1, 1] mapped to [0, 1] (weights halved). Riemann
    rules on ``steps`` equal cells: left/right/middle points with weight 1/steps; trapezoid on
    ``steps`` equally spaced points including both ends (spacing 1/(steps−1)), the end weights
    halved, so the weights sum to 1. Gauss–Legendre and the left/right/middle rules are Captum's;
    Captum's trapezoid weighs the same points by 1/steps (weights summing to 1 − 1/steps), so its
    trapezoid IG is ours times (steps−1)/steps and misses completeness by that factor."""
    if steps < 1:
        raise AttributionError(f"steps must be at least 1, got {steps}.")
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (nodes + 1.0), 0.5 * weights
    if rule == "riemann_trapezoid":
        if steps < 2:
            raise AttributionError("The trapezoid rule needs at least 2 steps.")
        alphas = np.linspace(0.0, 1.0, steps)
        w = np.full(steps, 1.0 / (steps - 1))
        w[[0, -1]] *= 0.5
        return alphas, w
    w = np.full(steps, 1.0 / steps)
    if rule == "riemann_left":
        return np.linspace(0.0, 1.0 - 1.0 / steps, steps), w
    if rule == "riemann_right":
        return np.linspace(1.0 / steps, 1.0, steps), w
    if rule == "riemann_middle":
        return np.linspace(0.5 / steps, 1.0 - 0.5 / steps, steps), w
    raise AttributionError(f"Unknown integration rule {rule!r}; expected one of {', '.join(IG_RULES)}.")


def _ig_cost(facts, params) -> PassEstimate:
    steps = int(params.get("steps", 50))
    return PassEstimate(forward=steps + 2, backward=steps)


@register("integrated-gradients", "Integrated Gradients", "gradient", {"gradients"},
          "Sundararajan, Taly & Yan, ICML 2017",
          params=(ParamSpec("steps", 50, "int", "Points on the straight path from the baseline to the input.", low=2,
                            high=1000, log=True),
                  ParamSpec("baseline", "zero", "choice", "The reference input x₀. " + BASELINE_HELP
                            + " For table rows: 'zero', 'mean' (of the background rows) or 'noise'.", choices=BASELINES),
                  ParamSpec("rule", "gausslegendre", "choice", "How the path integral is discretised (Captum's rules).",
                            choices=IG_RULES),
                  ParamSpec("blur_sigma", 4.0, "float", "Width (pixels) of the Gaussian blur for the 'blur' baseline.",
                            low=0.5, high=64.0),
                  seed_param()),
          inputs=("image", "table"), cost=_ig_cost)
def integrated_gradients(subject: Subject, params: dict):
    """Integrated Gradients: IG(x) = (x − x₀) ⊙ ∫₀¹ ∇f_c(x₀ + α(x − x₀)) dα for the target logit f_c,
    the integral taken by the chosen rule. Completeness: Σ IG = f_c(x) − f_c(x₀) up to the
    discretisation error, reported per sample as ``completeness_gap`` (relative to |f_c(x) − f_c(x₀)|).
    ``steps`` forward and backward passes per sample, plus two forward passes for the gap."""
    x = subject.x
    n = len(x)
    x0 = baseline_of(subject, params["baseline"], params["blur_sigma"], params["seed"])
    alphas, weights = ig_alphas(params["steps"], params["rule"])
    steps = len(alphas)
    a = torch.tensor(alphas, dtype=torch.float32)
    w = torch.tensor(weights, dtype=torch.float32)
    diff = x - x0
    view = (-1,) + (1,) * (x.ndim - 1)

    def build(s, e):
        r = torch.arange(s, e)
        i, k = r // steps, r % steps
        return x0[i] + a[k].view(view) * diff[i]

    acc = torch.zeros_like(x, dtype=torch.float64)
    for s, e, g in subject.iter_gradients(n * steps, build, lambda s, e: subject.targets[np.arange(s, e) // steps],
                                          (0.0, 0.98)):
        r = torch.arange(s, e)
        acc.index_add_(0, r // steps, (g * w[r % steps].view(view)).double())
    ig = diff.double() * acc
    f_x = subject.target_scores(x, subject.targets)
    f_0 = subject.target_scores(x0, subject.targets)
    delta = f_x - f_0
    total = ig.reshape(n, -1).sum(1).numpy()
    gap = np.abs(total - delta) / np.maximum(np.abs(delta), 1e-12)
    return _values(subject, ig), {"completeness_gap": gap, "f_x": f_x, "f_baseline": f_0}


# ---------------------------------------------------------------------------------------------- noise
def _noise_sigma(subject: Subject, level: float) -> torch.Tensor:
    """σ = level × (the input's value range): per channel for images (the range of valid pixels),
    per feature for tables (the range of the background rows)."""
    if subject.kind == "image":
        return level * pixel_range(subject.model, subject.x.shape[1])[0]  # [C, 1, 1]
    bg = torch.tensor(subject.background, dtype=torch.float32)
    return level * (bg.max(0).values - bg.min(0).values)


def _noisy_gradients(subject: Subject, samples: int, level: float, seed: int, squares: bool = False):
    """Σ g and (when ``squares``) Σ g² over ``samples`` noisy copies x + ε, ε ~ N(0, σ²), of every input.

    Each sample's noise comes from its own generator (seed, index), so the result does not depend
    on how the rows are batched."""
    x = subject.x
    n = len(x)
    sigma = _noise_sigma(subject, level)
    last: dict[int, torch.Tensor] = {}

    def noise_of(i: int) -> torch.Tensor:
        if i not in last:  # a sample split across two chunks is drawn once
            last.clear()
            g = torch.Generator().manual_seed(int(seed) * 1_000_003 + i)
            last[i] = torch.randn((samples, *x.shape[1:]), generator=g) * sigma
        return last[i]

    def build(s, e):
        # rows s..e are (sample, draw) pairs, sample-major: whole blocks of each sample's draws
        parts = []
        for i in range(s // samples, (e - 1) // samples + 1):
            lo, hi = max(s, i * samples) - i * samples, min(e, (i + 1) * samples) - i * samples
            parts.append(x[i] + noise_of(i)[lo:hi])
        return torch.cat(parts)

    total = torch.zeros_like(x, dtype=torch.float64)
    sq = torch.zeros_like(x, dtype=torch.float64) if squares else None
    for s, e, g in subject.iter_gradients(n * samples, build, lambda s, e: subject.targets[np.arange(s, e) // samples]):
        idx = torch.arange(s, e) // samples
        g = g.double()
        total.index_add_(0, idx, g)
        if sq is not None:
            sq.index_add_(0, idx, g * g)
    return total, sq


def _noise_cost(facts, params) -> PassEstimate:
    k = int(params.get("samples", 25))
    return PassEstimate(forward=k, backward=k)


_NOISE_PARAMS = (
    ParamSpec("samples", 25, "int", "Noisy copies of each input.", low=2, high=500, log=True),
    ParamSpec("noise_level", 0.15, "float", "Noise σ as a share of the input's value range (Smilkov et al. suggest "
              "0.10-0.20).", low=0.0, high=1.0),
    seed_param(),
)


@register("smoothgrad", "SmoothGrad", "gradient", {"gradients"}, "Smilkov et al., arXiv 1706.03825 (2017)",
          params=_NOISE_PARAMS, inputs=("image", "table"), cost=_noise_cost, stochastic=True)
def smoothgrad(subject: Subject, params: dict):
    """SmoothGrad: the mean gradient of the target logit over noisy copies,
    (1/n) Σᵢ ∇f_c(x + εᵢ) with εᵢ ~ N(0, σ²), σ = noise level × the input's range (signed; take
    |·| for display). ``samples`` forward and backward passes per sample."""
    k = params["samples"]
    total, _ = _noisy_gradients(subject, k, params["noise_level"], params["seed"])
    return _values(subject, total / k), {}


@register("vargrad", "VarGrad", "gradient", {"gradients"}, "Adebayo et al., ICLR workshop 2018 (Local explanation "
          "methods for deep neural networks lack sensitivity to parameter values)",
          params=_NOISE_PARAMS, inputs=("image", "table"), cost=_noise_cost, stochastic=True)
def vargrad(subject: Subject, params: dict):
    """VarGrad: the variance of the gradient over the same noisy copies as SmoothGrad,
    (1/n) Σᵢ gᵢ² − ((1/n) Σᵢ gᵢ)² (non-negative). ``samples`` forward and backward passes per sample."""
    k = params["samples"]
    total, squares = _noisy_gradients(subject, k, params["noise_level"], params["seed"], squares=True)
    mean = total / k
    return _values(subject, (squares / k - mean * mean).clamp_min(0.0)), {}
