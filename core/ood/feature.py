"""Feature-space detectors: they read the penultimate features (some also the logits and the head)."""
from __future__ import annotations

import math

import numpy as np
import torch

from core.kernels.rows import centred_sq_norms, column_means

from ._stats import (
    between_class_covariance,
    centred64,
    centred_gram,
    class_means,
    eigh,
    energy,
    f64,
    l2_normalise,
    min_sq_distance_t,
    softmax,
    whitener,
    within_class_covariance,
)
from .base import Detector, OODError, ParamSpec, class_assignment, register

_SHRINK = ParamSpec("shrinkage", 0.0, "float",
                    "Blend the covariance with (trace/D)·I: 0 = the plain (pseudo-)inverse, as in the paper.",
                    low=0.0, high=1.0)
_SEED = ParamSpec("seed", 0, "int", "Seed of the random bank subset.", low=0, high=2**31 - 1)


# ---------------------------------------------------------------------------- Mahalanobis family
class _ClassGaussian(Detector):
    """Shared fit: class means and the tied (within-class) covariance, as a whitening matrix."""

    def _fit_class_gaussian(self, outputs):
        x = outputs.features
        y, source = class_assignment(outputs)
        means, classes, counts = class_means(x, y)
        cov = within_class_covariance(x, y, means, classes)
        return self._set_class_gaussian(means, classes, counts, cov, source)

    def _set_class_gaussian(self, means, classes, counts, cov, source):
        """The fitted state from the class means [K, D] (of the K classes present), their counts and the
        tied covariance; shared by the in-memory fit and the fit from merged statistics
        (:mod:`core.ood.mergeable`)."""
        # the mean of the rows with a class, subtracted before whitening so the expansion stays exact
        self.center_ = counts @ means / counts.sum()
        self.whiten_ = whitener(cov, self.params["shrinkage"])
        if self.whiten_.shape[1] == 0:
            raise OODError(f"{self.spec.name}: the class-centred fit features have no variance (constant features, or "
                           "one sample per class), so the covariance is zero; use more (and more varied) fit samples.")
        self.class_centers_ = (means - self.center_) @ self.whiten_
        self.classes_ = classes
        self.info.update(classes_from=source, classes=int(len(classes)), rank=int(self.whiten_.shape[1]))
        return cov, means, counts

    def _min_class_distance_t(self, z):
        best, _ = min_sq_distance_t(z, torch.from_numpy(self.class_centers_))
        return best.clamp_(min=0.0)

    def _min_class_distance(self, x):
        with torch.no_grad():
            z = centred64(x, self.center_) @ torch.from_numpy(self.whiten_)
            return self._min_class_distance_t(z).numpy()


@register("mahalanobis", "Mahalanobis", "feature", {"features"},
          "Lee et al., A Simple Unified Framework for Detecting Out-of-Distribution Samples and Adversarial Attacks, "
          "NeurIPS 2018", params=(_SHRINK,), requires_fit=True, class_conditional=True)
class Mahalanobis(_ClassGaussian):
    """**Mahalanobis distance to the nearest class mean (tied covariance).**
    score = −min_c (z − μ_c)ᵀ Σ⁺ (z − μ_c).

    μ_c are the class means of the fit features and Σ the covariance of the class-centred fit
    features (shared by all classes); Σ⁺ is its pseudo-inverse, so singular directions are dropped.
    Classes come from the fit labels, or the predictions when there are none. Computed in
    float64 as ‖(z − μ̄)W − (μ_c − μ̄)W‖² with W Wᵀ = Σ⁺: no N×N matrix.
    Lee et al., NeurIPS 2018 (single layer, no input preprocessing, as in OpenOOD).
    """

    def _fit(self, outputs):
        self._fit_class_gaussian(outputs)

    def _score(self, outputs):
        return -self._min_class_distance(outputs.features)


@register("rmds", "Relative Mahalanobis", "feature", {"features"},
          "Ren et al., A Simple Fix to Mahalanobis Distance for Improving Near-OOD Detection, arXiv 2106.09022 (2021)",
          params=(_SHRINK,), requires_fit=True, class_conditional=True)
class RelativeMahalanobis(_ClassGaussian):
    """**Relative Mahalanobis distance.** score = −min_c [MD_c(z) − MD₀(z)].

    MD_c is the Mahalanobis distance of the tied class-conditional Gaussian (as in *Mahalanobis*);
    MD₀ uses the global mean and the global covariance of the fit features. Subtracting the
    background distance removes directions that are far for every class.
    Ren et al., 2021.
    """

    def _fit(self, outputs):
        self._fit_class_gaussian(outputs)  # the background Gaussian is set with the class Gaussian

    def _set_class_gaussian(self, means, classes, counts, cov, source):
        out = super()._set_class_gaussian(means, classes, counts, cov, source)
        self._set_background(*out)
        return out

    def _set_background(self, within, means, counts):
        # the global covariance of the rows with a class = within-class + between-class covariance
        # (one N×D Gram matrix serves both Gaussians)
        self.bg_center_ = self.center_
        total = within + between_class_covariance(means, counts, self.center_)
        self.bg_whiten_ = whitener(total, self.params["shrinkage"])
        self._both = np.ascontiguousarray(np.concatenate([self.whiten_, self.bg_whiten_], axis=1))

    def _score(self, outputs):
        k = self.whiten_.shape[1]
        with torch.no_grad():
            z = centred64(outputs.features, self.center_) @ torch.from_numpy(self._both)
            md0 = z[:, k:].square().sum(1)
            return (md0 - self._min_class_distance_t(z[:, :k])).numpy()


# ---------------------------------------------------------------------------- nearest neighbours
def _bank_subset(n: int, size: int, seed: int) -> np.ndarray | slice:
    if size >= n:
        return slice(None)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def _chunk_rows(bank_size: int, budget_bytes: int = 64 << 20) -> int:
    return max(1, budget_bytes // (4 * max(bank_size, 1)))


@register("knn", "KNN", "feature", {"features"},
          "Sun et al., Out-of-Distribution Detection with Deep Nearest Neighbors, ICML 2022",
          params=(ParamSpec("k", 50, "int", "Which neighbour: the distance to the k-th nearest bank sample "
                            "(50 for CIFAR-scale banks, 1000 for ImageNet-scale; capped at the bank size).",
                            low=1, high=100_000, log=True),
                  ParamSpec("bank_fraction", 1.0, "float", "Share of the fit set kept as the neighbour bank "
                            "(the paper uses 1% of ImageNet).", low=1e-4, high=1.0, log=True),
                  _SEED),
          requires_fit=True)
class KNN(Detector):
    """**Deep nearest neighbours.** score = −‖ẑ − ẑ₍ₖ₎‖₂, the distance to the k-th nearest neighbour.

    ẑ = z/(‖z‖₂ + 1e-10) for both the bank (fit features) and the queries; k = 50, capped at the
    bank size. Exact brute force in float32: chunks of queries, one matrix product and an in-place
    partial sort (np.partition) per chunk, within a 64 MB buffer.
    Sun et al., ICML 2022.
    """

    def _fit(self, outputs):
        x = outputs.features
        size = max(1, math.ceil(self.params["bank_fraction"] * len(x)))
        bank = l2_normalise(x[_bank_subset(len(x), size, self.params["seed"])], np.float32)
        self.bank_t_ = np.ascontiguousarray(bank.T)  # [D, M]: queries @ bank_t_ is one BLAS call
        self.bank_sq_ = (bank * bank).sum(1)
        self.k_ = min(self.params["k"], len(bank))
        self.info.update(k=self.k_, bank_size=len(bank))

    def _score(self, outputs):
        q = l2_normalise(outputs.features, np.float32)
        m, k = self.bank_t_.shape[1], self.k_
        out = np.empty(len(q))
        chunk = _chunk_rows(m)
        buf = np.empty((min(chunk, len(q)), m), np.float32)
        for s in range(0, len(q), chunk):
            qc = q[s:s + chunk]
            part = buf[:len(qc)]
            # ‖a−b‖² = ‖a‖² + (‖b‖² − 2a·b): rank the bank by the bracket, in place in one buffer
            np.matmul(qc, self.bank_t_, out=part)
            part *= -2.0
            part += self.bank_sq_
            part.partition(k - 1, axis=1)
            out[s:s + chunk] = part[:, k - 1] + (qc.astype(np.float64) ** 2).sum(1)
        return -np.sqrt(np.maximum(out, 0.0))


@register("nnguide", "NNGuide", "feature", {"logits", "features"},
          "Park et al., Nearest Neighbor Guidance for Out-of-Distribution Detection, ICCV 2023",
          params=(ParamSpec("k", 100, "int", "Number of nearest guide-bank samples averaged (capped at the bank size).",
                            low=1, high=100_000, log=True),
                  ParamSpec("bank_fraction", 0.01, "float", "Share of the fit set used as the guide bank "
                            "(OpenOOD: 1%); the bank keeps at least 5k samples when the fit set has them.",
                            low=1e-4, high=1.0, log=True),
                  _SEED),
          requires_fit=True)
class NNGuide(Detector):
    """**Nearest-neighbour guidance.** score = E(x) · mean of the top-k ⟨ẑ, b_i⟩ over the guide bank.

    The bank holds b_i = ẑ_i · E(x_i) for a random subset of the fit set (ẑ = z/(‖z‖+1e-10),
    E = logsumexp of the logits), so the energy is kept only where the sample lies near confident
    training samples. k = 100 and a 1% bank, as in OpenOOD v1.5. Park et al., ICCV 2023.
    """

    def _fit(self, outputs):
        n = len(outputs)
        # at least 5k samples (OpenOOD's ImageNet setting has k/bank = 1/128), so the top-k mean stays a
        # nearest-neighbour mean on small fit sets instead of averaging the whole bank
        size = min(n, max(math.ceil(self.params["bank_fraction"] * n), 5 * self.params["k"]))
        idx = _bank_subset(n, size, self.params["seed"])
        bank = l2_normalise(outputs.features[idx]) * energy(outputs.logits[idx])[:, None]
        self.bank_t_ = np.ascontiguousarray(bank.T, np.float32)
        self.k_ = min(self.params["k"], size)
        self.info.update(k=self.k_, bank_size=int(size))

    def _score(self, outputs):
        q = l2_normalise(outputs.features, np.float32)
        m, k = self.bank_t_.shape[1], self.k_
        guide = np.empty(len(q))
        chunk = _chunk_rows(m)
        for s in range(0, len(q), chunk):
            sims = q[s:s + chunk] @ self.bank_t_
            sims.partition(m - k, axis=1)  # the k largest inner products end up in the last k columns
            guide[s:s + chunk] = sims[:, m - k:].mean(1, dtype=np.float64)
        return energy(outputs.logits) * guide


# ---------------------------------------------------------------------------- principal / residual space
def vim_principal_dim(d: int) -> int:
    """ViM's principal dimension: 1000 for D ≥ 2048 and 512 for D ≥ 768 (the paper), D/2 below that
    (OpenOOD v1.5 uses 256 for the 512-D ResNet-18), never more than D − 1."""
    if d >= 2048:
        dim = 1000
    elif d >= 768:
        dim = 512
    else:
        dim = d // 2
    return max(1, min(dim, d - 1))


_DIM = ParamSpec("dim", None, "int", "Principal-space dimension kept; the residual is the rest. Auto = 1000 "
                 "for D ≥ 2048, 512 for D ≥ 768, else D/2 (capped at D−1).", low=1, high=100_000, optional=True,
                 # the principal space must leave a residual: dim < D
                 bound=lambda facts: facts["feature_dim"] - 1 if facts.get("feature_dim", 0) > 1 else None)


def residual_origin(w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """u = −W⁺b: the feature the linear head maps to zero logits (ViM's origin)."""
    return -np.linalg.pinv(f64(w)) @ f64(b)


def residual_dim(spec_name: str, params: dict, d: int) -> int:
    dim = params["dim"] if params["dim"] is not None else vim_principal_dim(d)
    if dim >= d:
        raise OODError(f"{spec_name}: dim must be smaller than the feature dimension D = {d} "
                       f"(the residual space would be empty), got {dim}.")
    return dim


class _ResidualSpace(Detector):
    def _fit_residual(self, outputs):
        w = f64(outputs.head_weight)
        b = f64(outputs.head_bias)
        dim = residual_dim(self.spec.name, self.params, w.shape[1])
        self.origin_ = residual_origin(w, b)
        # float64 covariance (row blocks centred in float64, no N×D copy) and eigendecomposition
        self._set_residual(centred_gram(outputs.features, self.origin_) / len(outputs.features), dim)

    def _set_residual(self, cov, dim):
        """The residual basis from the covariance of z − u (shared with :mod:`core.ood.mergeable`)."""
        d = len(cov)
        evals, evecs = eigh(cov)
        order = np.argsort(evals)[::-1]
        self.residual_basis_ = np.ascontiguousarray(evecs[:, order[dim:]])
        self.info.update(dim=int(dim), residual_dim=int(d - dim))

    def _residual_norm(self, x, chunk: int = 2048):
        """‖(x − u)R‖ per row. The projection onto the (float64) residual basis runs in float32 on
        float32 features (~1e-6 relative error, half the time of a float64 product), ``chunk`` rows at
        a time through two reused buffers that stay in cache (about 2× faster here than one N×D
        centred copy and one product)."""
        with torch.no_grad():
            xt = torch.from_numpy(np.ascontiguousarray(x))
            dt = xt.dtype if xt.dtype in (torch.float32, torch.float64) else torch.float64
            u = torch.from_numpy(self.origin_).to(dt)
            basis = torch.from_numpy(self.residual_basis_).to(dt)
            n = len(xt)
            out = torch.empty(n, dtype=torch.float64)
            centred = torch.empty((min(chunk, n), xt.shape[1]), dtype=dt)
            proj = torch.empty((min(chunk, n), basis.shape[1]), dtype=dt)
            for s in range(0, n, chunk):
                m = min(chunk, n - s)
                torch.sub(xt[s:s + m].to(dt), u, out=centred[:m])
                torch.mm(centred[:m], basis, out=proj[:m])
                out[s:s + m] = proj[:m].square_().sum(1)
            return out.sqrt_().numpy()


@register("vim", "ViM", "feature", {"logits", "features", "head"},
          "Wang et al., ViM: Out-Of-Distribution with Virtual-logit Matching, CVPR 2022",
          params=(_DIM,), requires_fit=True)
class ViM(_ResidualSpace):
    """**Virtual-logit matching.** score = logsumexp(f) − α·‖(z − u)R‖.

    u = −W⁺b is the origin the head maps to zero logits; the eigenvectors of the covariance of
    (z − u) on the fit set are split into a principal space of `dim` dimensions and the rest R.
    The virtual logit ‖(z − u)R‖ is scaled by α = mean_fit(max f) / mean_fit(‖(z − u)R‖).
    dim: 1000 if D ≥ 2048, 512 if D ≥ 768 (paper), D/2 below (OpenOOD's 256 for D = 512).
    Wang et al., CVPR 2022.
    """

    def _fit(self, outputs):
        self._fit_residual(outputs)
        self._set_alpha(float(f64(outputs.logits).max(1).mean()), float(self._residual_norm(outputs.features).mean()))

    def _set_alpha(self, mean_max_logit: float, vlogit: float) -> None:
        if not vlogit > 1e-12:
            raise OODError("ViM: the fit features have no spread outside the principal space "
                           f"(dim = {self.info['dim']}); choose a smaller dim.")
        self.alpha_ = float(mean_max_logit / vlogit)
        self.info["alpha"] = self.alpha_

    def _score(self, outputs):
        return energy(outputs.logits) - self.alpha_ * self._residual_norm(outputs.features)


@register("residual", "Residual", "feature", {"features", "head"},
          "Wang et al., ViM: Out-Of-Distribution with Virtual-logit Matching, CVPR 2022 (the Residual baseline)",
          params=(_DIM,), requires_fit=True)
class Residual(_ResidualSpace):
    """**Residual norm.** score = −‖(z − u)R‖: ViM without the energy term.

    u = −W⁺b and R spans the eigenvectors of cov(z − u) beyond the principal `dim`
    (same rule as ViM). Wang et al., CVPR 2022.
    """

    def _fit(self, outputs):
        self._fit_residual(outputs)

    def _score(self, outputs):
        return -self._residual_norm(outputs.features)


# ---------------------------------------------------------------------------- class patterns / boundaries
@register("she", "SHE", "feature", {"logits", "features"},
          "Zhang et al., Out-of-Distribution Detection based on In-Distribution Data Patterns Memorization with "
          "Modern Hopfield Energy, ICLR 2023", requires_fit=True, class_conditional=True)
class SHE(Detector):
    """**Simplified Hopfield energy.** score = ⟨z, m_ŷ⟩, ŷ = argmax f.

    m_c is the mean feature of the fit samples of class c that the model classifies correctly
    (without labels: those predicted as c; a class with no correct sample falls back to the mean
    of the samples predicted as c, and a class nobody is predicted as gets m_c = 0).
    Zhang et al., ICLR 2023.
    """

    def _fit(self, outputs):
        c = outputs.num_classes
        pred = outputs.logits.argmax(1)
        y, source = class_assignment(outputs)
        x = outputs.features
        patterns = np.zeros((c, x.shape[1]))
        fallback, empty = [], []
        for k in range(c):
            mask = (pred == k) & (y == k)
            if not mask.any():
                mask = pred == k
                (fallback if mask.any() else empty).append(k)
            if mask.any():
                patterns[k] = f64(x[mask]).mean(0)
        self.patterns_ = patterns
        self.info.update(classes_from=source, fallback_classes=fallback, empty_classes=empty)

    def _score(self, outputs):
        pred = outputs.logits.argmax(1)
        return np.einsum("nd,nd->n", f64(outputs.features), self.patterns_[pred])


@register("fdbd", "fDBD", "feature", {"logits", "features", "head"},
          "Liu & Qin, Fast Decision Boundary based Out-of-Distribution Detector, ICML 2024",
          params=(ParamSpec("normalizer", "distance", "choice", "Divide by ‖z − μ_fit‖ ('distance', the paper) or "
                            "by ‖z‖ ('norm', sometimes better per OpenOOD).", choices=("distance", "norm")),),
          requires_fit=True)
class FDBD(Detector):
    """**Feature distance to decision boundaries.**
    score = Σ_{c≠ŷ} |f_ŷ − f_c| / ‖w_ŷ − w_c‖ divided by ‖z − μ_fit‖.

    |f_ŷ − f_c| / ‖w_ŷ − w_c‖ is the distance from z to the boundary between ŷ and c in feature
    space (for a linear head); dividing by the distance to the fit mean removes the scale.
    Liu & Qin, ICML 2024.
    """

    def _fit(self, outputs):
        w = f64(outputs.head_weight)
        # ‖w_i − w_j‖ from the Gram matrix: C×C memory, never C×C×D (16 GB for an ImageNet ResNet-50 head)
        sq = (w * w).sum(1)
        denom = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (w @ w.T), 0.0))
        np.fill_diagonal(denom, 1.0)  # the ŷ = c term has a zero numerator
        self.denominator_ = np.maximum(denom, np.finfo(np.float64).tiny)
        self.mean_ = column_means(outputs.features)

    def _score(self, outputs):
        f = f64(outputs.logits)
        pred = f.argmax(1)
        top = f[np.arange(len(f)), pred]
        boundary = (np.abs(top[:, None] - f) / self.denominator_[pred]).sum(1)
        center = self.mean_ if self.params["normalizer"] == "distance" else np.zeros_like(self.mean_)
        norm = np.sqrt(centred_sq_norms(outputs.features, center))  # float64 sums, one pass over the features
        return boundary / np.maximum(norm, 1e-12)


@register("gradnorm", "GradNorm", "feature", {"logits", "features", "head"},
          "Huang, Geng & Li, On the Importance of Gradients for Detecting Distributional Shifts in the Wild, "
          "NeurIPS 2021")
class GradNorm(Detector):
    """**Gradient norm of the last layer.** score = ‖∂ KL(u ‖ softmax(f)) / ∂W‖₁.

    For a linear head f = Wz + b the gradient is (p − u) zᵀ with u uniform, so its L1 norm is
    ‖p − 1/C‖₁ · ‖z‖₁: no backward pass, no model needed. (The authors' code uses all-ones
    targets instead of 1/C, which multiplies every score by C and leaves the ranking unchanged.)
    Huang, Geng & Li, NeurIPS 2021.
    """

    def _score(self, outputs):
        p = softmax(outputs.logits)
        return np.abs(p - 1.0 / p.shape[1]).sum(1) * np.abs(f64(outputs.features)).sum(1)
