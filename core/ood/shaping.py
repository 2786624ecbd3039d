"""Activation shaping: change the penultimate features (or the head), recompute the logits with the
linear head, and score them with the energy logsumexp(Wz̃ + b)."""
from __future__ import annotations

import numpy as np

from core.kernels.rows import percentile_exact
from core.kernels.shaping import shaped_logits, top_k_sums

from ._stats import energy, f64, mm
from .base import Detector, ParamSpec, register

#: exp(s₁/s₂) is clipped at exp(±MAX_LOG_SCALE): for signed (non-ReLU) features s₂ can be ~0.
MAX_LOG_SCALE = 50.0


def _kept_count(d: int, percentile: float) -> int:
    # as the ASH/SCALE code: keep k = D − round(D·p/100) units, at least one
    return max(1, d - int(np.round(d * percentile / 100.0)))


def _top_k_mask(z: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the k largest entries of every row: exactly k per row, ties broken by the lower
    column index (the rule of :func:`core.kernels.shaping.shaped_logits`)."""
    d = z.shape[1]
    if k >= d:
        return np.ones(z.shape, bool)
    idx = np.argsort(-np.asarray(z, np.float64), axis=1, kind="stable")[:, :k]
    mask = np.zeros(z.shape, bool)
    np.put_along_axis(mask, idx, True, axis=1)
    return mask


def _log_scale(s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    ratio = np.divide(s1, s2, out=np.ones_like(s1), where=s2 != 0)
    return np.clip(ratio, -MAX_LOG_SCALE, MAX_LOG_SCALE)


def shape_features(z: np.ndarray, method: str, percentile: float) -> np.ndarray:
    """The shaped features of ASH-P/-B/-S or SCALE (float64 [N, D]).

    k = D − round(D·p/100) units with the largest values are kept; s₁ is the row sum before and s₂
    after pruning.
    - "ash-p": zero the rest;
    - "ash-b": set the kept units to s₁/k and the rest to 0 (the row sum is preserved);
    - "ash-s": prune, then multiply by exp(s₁/s₂);
    - "scale": multiply the unpruned features by exp(s₁/s₂).
    """
    z = f64(z)
    k = _kept_count(z.shape[1], percentile)
    mask = _top_k_mask(z, k)
    s1 = z.sum(1)
    if method == "ash-p":
        return np.where(mask, z, 0.0)
    if method == "ash-b":
        return np.where(mask, (s1 / k)[:, None], 0.0)
    pruned = np.where(mask, z, 0.0)
    scale = np.exp(_log_scale(s1, pruned.sum(1)))[:, None]
    if method == "ash-s":
        return pruned * scale
    if method == "scale":
        return z * scale
    raise ValueError(f"unknown shaping method {method!r}")


def _head_energy(z: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return energy(z @ f64(w).T + f64(b))


_PCT_NOTE = "Percentile p: keep the largest (100 − p)% of the units of each sample."


@register("react", "ReAct", "shaping", {"features", "head"},
          "Sun, Guo & Li, ReAct: Out-of-distribution Detection With Rectified Activations, NeurIPS 2021",
          params=(ParamSpec("percentile", 90.0, "float", "Clip activations at this percentile of all fit-set "
                            "activations (100 = no clipping on the fit set).", low=0.0, high=100.0),),
          requires_fit=True)
class ReAct(Detector):
    """**Rectified activations.** score = logsumexp(W min(z, c) + b).

    c is the p-th percentile (p = 90) of all activations of the fit set; clipping removes the few
    abnormally large activations that OOD inputs tend to produce. Sun, Guo & Li, NeurIPS 2021.
    """

    def _fit(self, outputs):
        x = outputs.features
        p = self.params["percentile"]
        # exact np.percentile (linear interpolation, evaluated in float64) by a parallel histogram pass and a
        # selection among the few values in the bins holding the two order statistics
        self.threshold_ = float(np.max(x)) if p >= 100 else percentile_exact(x, p)
        self.info["threshold"] = self.threshold_

    def _score(self, outputs):
        z = np.minimum(f64(outputs.features), self.threshold_)
        return _head_energy(z, outputs.head_weight, outputs.head_bias)


class _Shaping(Detector):
    method = ""

    def _score(self, outputs):
        z = np.asarray(outputs.features)
        if self.method == "scale" and z.ndim == 2:
            # W(z·s) + b = s·(Wz) + b: the scale only needs the top-k sum, not the shaped N×D matrix
            d = z.shape[1]
            k = _kept_count(d, self.params["percentile"])
            s1, s2 = top_k_sums(z, k)  # one parallel pass, no sorted copy of the rows
            scale = np.exp(_log_scale(s1, s2))
            logits = scale[:, None] * mm(f64(z), f64(outputs.head_weight).T) + f64(outputs.head_bias)
            return energy(logits)
        if z.ndim == 2 and self.method in ("ash-p", "ash-b", "ash-s"):
            # one fused pass per row: select the k kept units and accumulate only their head columns (float64)
            k = _kept_count(z.shape[1], self.params["percentile"])
            logits = shaped_logits(z, outputs.head_weight, k, self.method, MAX_LOG_SCALE)
            return energy(logits + f64(outputs.head_bias))
        z = shape_features(outputs.features, self.method, self.params["percentile"])
        return _head_energy(z, outputs.head_weight, outputs.head_bias)


_ASH_REF = "Djurisic et al., Extremely Simple Activation Shaping for Out-of-Distribution Detection, ICLR 2023"
_ASH_PERCENTILE = ParamSpec("percentile", 90.0, "float", _PCT_NOTE, low=0.0, high=99.9)


@register("ash-p", "ASH-P", "shaping", {"features", "head"}, _ASH_REF,
          params=(_ASH_PERCENTILE,), assumes=("nonnegative-features",))
class ASHP(_Shaping):
    """**ASH-P (prune).** Keep the largest (100 − p)% units of z (p = 90), zero the rest, then
    score = logsumexp(W z̃ + b). Meant for non-negative (post-ReLU) features.
    Djurisic et al., ICLR 2023.
    """

    method = "ash-p"


@register("ash-b", "ASH-B", "shaping", {"features", "head"}, _ASH_REF,
          params=(_ASH_PERCENTILE,), assumes=("nonnegative-features",))
class ASHB(_Shaping):
    """**ASH-B (binarise).** Keep the largest (100 − p)% units (p = 90), set each kept unit to s₁/k
    (s₁ = the sum of all units, k = the number kept) and the rest to 0, then
    score = logsumexp(W z̃ + b). Meant for non-negative (post-ReLU) features.
    Djurisic et al., ICLR 2023.
    """

    method = "ash-b"


@register("ash-s", "ASH-S", "shaping", {"features", "head"}, _ASH_REF,
          params=(_ASH_PERCENTILE,), assumes=("nonnegative-features",))
class ASHS(_Shaping):
    """**ASH-S (scale).** Prune to the largest (100 − p)% units (p = 90), multiply by exp(s₁/s₂)
    (s₁, s₂ = the sums before and after pruning), then score = logsumexp(W z̃ + b).
    Meant for non-negative (post-ReLU) features; for signed features s₁/s₂ is clipped to ±50.
    Djurisic et al., ICLR 2023 (the ASH variant in OpenOOD v1.5).
    """

    method = "ash-s"


@register("scale", "SCALE", "shaping", {"features", "head"},
          "Xu et al., Scaling for Training Time and Post-hoc Out-of-distribution Detection Enhancement, ICLR 2024",
          params=(ParamSpec("percentile", 85.0, "float", "Percentile p: s₂ sums the largest (100 − p)% units.",
                            low=0.0, high=99.9),), assumes=("nonnegative-features",))
class Scale(_Shaping):
    """**SCALE.** score = logsumexp(W z·exp(s₁/s₂) + b), no pruning.

    s₁ is the sum of all units and s₂ the sum of the largest (100 − p)% (p = 85); the scale
    exp(s₁/s₂) grows when a sample's activation mass is spread out. s₁/s₂ is clipped to ±50.
    Xu et al., ICLR 2024.
    """

    method = "scale"


@register("dice", "DICE", "shaping", {"features", "head"},
          "Sun & Li, DICE: Leveraging Sparsification for Out-of-Distribution Detection, ECCV 2022",
          params=(ParamSpec("percentile", 90.0, "float", "Sparsity p: zero the head weights whose contribution is "
                            "at or below the p-th percentile.", low=0.0, high=100.0),),
          requires_fit=True, assumes=("nonnegative-features",))
class DICE(Detector):
    """**Directed sparsification.** score = logsumexp((W ⊙ M) z + b).

    The contribution of unit d to class c is m_d·W_cd with m the mean fit-set activation; the mask
    M keeps the weights whose contribution exceeds its p-th percentile (p = 90) over all C·D
    entries. Sun & Li, ECCV 2022.
    """

    def _fit(self, outputs):
        mean_act = f64(outputs.features).mean(0)
        contrib = mean_act[None, :] * f64(outputs.head_weight)
        thresh = np.percentile(contrib, self.params["percentile"])
        self.mask_ = contrib > thresh
        self.info["kept_weights"] = float(self.mask_.mean())

    def _score(self, outputs):
        w = f64(outputs.head_weight) * self.mask_
        return energy(f64(outputs.features) @ w.T + f64(outputs.head_bias))
