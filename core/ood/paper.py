"""Detectors from the project brief: WDiscOOD and ConjNorm."""
from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from ._stats import EPS_NORM, class_means, eigh, f64, l2_normalise, min_sq_distance, mm, within_class_covariance
from .base import Detector, OODError, ParamSpec, class_assignment, register


def _sym_inv_sqrt(cov: np.ndarray) -> np.ndarray:
    """Symmetric Σ^(−1/2) in the pseudo-inverse sense (null directions map to 0)."""
    evals, evecs = eigh(cov)
    keep = evals > max(float(evals.max()), 0.0) * len(cov) * np.finfo(np.float64).eps
    v = evecs[:, keep]
    return (v / np.sqrt(evals[keep])) @ v.T


@register("wdiscood", "WDiscOOD", "paper", {"features"},
          "Chen et al., WDiscOOD: Out-of-Distribution Detection via Whitened Linear Discriminant Analysis, ICCV 2023",
          params=(ParamSpec("normalize", None, "bool", "L2-normalise the features first. Auto: on for signed "
                            "(transformer-like) features, off for non-negative (post-ReLU CNN) features, as the "
                            "paper does for ViT vs ResNet.", optional=True),
                  ParamSpec("residual_weight", None, "float", "λ, the weight of the residual-space distance. "
                            "Auto: 1 for signed features (ViT in the paper), 5 for non-negative ones (ResNet).",
                            low=0.0, high=1e3, optional=True),
                  ParamSpec("num_disc", None, "int", "Number of discriminants kept (the paper: 1000 for ResNet-50, "
                            "512 for ViT-B). Auto: all with a positive Fisher ratio (at most C − 1).",
                            low=1, high=100_000, optional=True),
                  ParamSpec("alpha", 1e-5, "float", "Ridge α in (S_w + αI)⁻¹S_b.", low=0.0, high=1.0)),
          requires_fit=True, class_conditional=True)
class WDiscOOD(Detector):
    """**Whitened linear discriminant analysis.**
    score = −min_c ‖G x̃ − G μ̃_c‖ − λ‖H x̃ − H μ̃‖.

    1. Optionally L2-normalise z. 2. Whiten: x̃ = S_w^(−1/2) z with S_w the within-class covariance
    of the fit features. 3. On x̃ compute S_w and the between-class scatter S_b (covariance of the
    class means around the global mean). 4. Discriminants = eigenvectors of (S_w + αI)⁻¹S_b
    (α = 1e−5), sorted by Fisher ratio; G = the top ones (unit length). 5. H = I − QQᵀ projects onto
    the orthogonal complement of span(G). μ̃_c are the whitened class means, μ̃ the whitened
    global mean; λ = 1 (ViT) or 5 (ResNet).
    Chen et al., ICCV 2023 (github ivalab/WDiscOOD).
    """

    def _fit(self, outputs):
        y, source = class_assignment(outputs)
        x = f64(outputs.features[y >= 0])
        y = y[y >= 0]
        self._set_options(bool((outputs.features < 0).any()))
        if self.normalize_:
            x = l2_normalise(x)
        means, classes, _ = class_means(x, y)
        self.whiten_ = _sym_inv_sqrt(within_class_covariance(x, y, means, classes))
        xw = mm(x, self.whiten_)
        means_w = means @ self.whiten_
        self._set_discriminants(means_w, xw.mean(0), within_class_covariance(xw, y, means_w, classes), source)

    def _set_options(self, signed: bool) -> None:
        """Normalisation and λ, from the parameters or (auto) from whether the fit features are signed."""
        normalize = self.params["normalize"] if self.params["normalize"] is not None else signed
        lam = self.params["residual_weight"]
        if lam is None:
            lam = 1.0 if signed else 5.0
        self.normalize_, self.lambda_ = bool(normalize), float(lam)

    def _set_discriminants(self, means_w, center, s_w, source) -> None:
        """Steps 3-5 from the whitened class means, the whitened global mean and the whitened within-class
        covariance (shared with the fit from merged statistics, :mod:`core.ood.mergeable`)."""
        dev = means_w - center
        s_b = dev.T @ dev / len(dev)
        d = len(s_w)
        # eigenvectors of (S_w + αI)⁻¹S_b as a symmetric problem: with B = S_w + αI,
        # B^(−1/2) S_b B^(−1/2) u = r u and v = B^(−1/2) u (the Fisher ratios r are real)
        b_evals, b_evecs = eigh(s_w + self.params["alpha"] * np.eye(d))
        if b_evals.min() <= 0:
            raise OODError("WDiscOOD: the within-class scatter is singular; use a positive alpha.")
        b_isqrt = (b_evecs / np.sqrt(b_evals)) @ b_evecs.T
        ratio, u = eigh(b_isqrt @ s_b @ b_isqrt)
        vecs = b_isqrt @ u
        order = np.argsort(ratio)[::-1]
        ratio, vecs = ratio[order], vecs[:, order]
        if self.params["num_disc"] is not None:
            k = min(self.params["num_disc"], d)
        else:
            k = int((ratio > max(ratio[0], 0.0) * 1e-6).sum())
        if k < 1:
            raise OODError("WDiscOOD: the class means do not differ on the fit set; no discriminant direction.")
        g = vecs[:, :k]
        g = g / np.linalg.norm(g, axis=0, keepdims=True)  # unit-length discriminants, as eig returns them
        self.disc_ = g  # columns: x̃ @ G gives the discriminant coordinates
        q, s, _ = np.linalg.svd(g, full_matrices=False)
        self.basis_ = q[:, s > s.max() * d * np.finfo(np.float64).eps]  # orthonormal basis of span(G)
        self.center_ = center
        self.class_disc_ = (means_w - center) @ g
        self.info.update(classes_from=source, normalize=self.normalize_, residual_weight=self.lambda_,
                         num_disc=k, fisher_ratios=ratio[:k].tolist())

    def _score(self, outputs):
        x = f64(outputs.features)
        if self.normalize_:
            x = l2_normalise(x)
        v = mm(x, self.whiten_) - self.center_
        disc = np.sqrt(min_sq_distance(v @ self.disc_, self.class_disc_)[0])
        residual = v - (v @ self.basis_) @ self.basis_.T  # H(x̃ − μ̃)
        return -disc - self.lambda_ * np.linalg.norm(residual, axis=1)


def _p_normalise(x: np.ndarray, p: float) -> np.ndarray:
    norm = (np.abs(x) ** p).sum(1, keepdims=True) ** (1.0 / p)
    return x / (norm + EPS_NORM)


def conjugate_distance(z: np.ndarray, mu: np.ndarray, q: float) -> np.ndarray:
    """d(z, μ) = −½‖z‖_q² + ⟨z, sign(μ)|μ|^(q−1) / ‖μ‖_q^(q−2)⟩ for every row of z and of μ: [N, K]."""
    zq = (np.abs(z) ** q).sum(1) ** (1.0 / q)
    mq = (np.abs(mu) ** q).sum(1, keepdims=True) ** (1.0 / q)
    grad = np.sign(mu) * np.abs(mu) ** (q - 1.0) / np.maximum(mq, EPS_NORM) ** (q - 2.0)
    return -0.5 * zq[:, None] ** 2 + z @ grad.T


@register("conjnorm", "ConjNorm", "paper", {"features"},
          "Peng et al., ConjNorm: Tractable Density Estimation for Out-of-Distribution Detection, ICLR 2024",
          params=(ParamSpec("p", 2.2, "float", "Norm order p of the normalisation (q = p/(p−1) is its conjugate). "
                            "Paper: 2.2 on CIFAR-10, 1.5 on ImageNet.", low=1.05, high=10.0),
                  ParamSpec("temperature", 0.05, "float", "Temperature T (paper: 0.05 CIFAR-10, 0.0005 ImageNet); "
                            "tune on validation data for small models.", low=1e-6, high=100.0, log=True)),
          requires_fit=True, class_conditional=True)
class ConjNorm(Detector):
    """**Conjugate-norm density.** score = log Σ_k exp(d(z, μ_k)/T) / Φ_k.

    z ← z/‖z‖_p and μ_k = the p-normalised class means of the fit features, q = p/(p−1);
    d(z, μ) = −½‖z‖_q² + ⟨z, μ|μ|^(q−2)/‖μ‖_q^(q−2)⟩ (a Bregman-type similarity), and the partition
    estimate Φ_k = Σ_i exp(d(z_i, μ_k)/T) runs over the fit samples. Computed in log space
    (logsumexp), so small T does not overflow. Defaults p = 2.2, T = 0.05 (the paper's CIFAR-10
    setting). Peng et al., ICLR 2024.
    """

    def _fit(self, outputs):
        y, source = class_assignment(outputs)
        p = self.params["p"]
        self.q_ = p / (p - 1.0)
        means, classes, _ = class_means(outputs.features, y)
        self.prototypes_ = _p_normalise(means, p)
        z = _p_normalise(f64(outputs.features), p)
        d = conjugate_distance(z, self.prototypes_, self.q_)
        self.log_partition_ = logsumexp(d / self.params["temperature"], axis=0)
        self.info.update(classes_from=source, q=self.q_)

    def _score(self, outputs):
        z = _p_normalise(f64(outputs.features), self.params["p"])
        d = conjugate_distance(z, self.prototypes_, self.q_)
        return logsumexp(d / self.params["temperature"] - self.log_partition_[None, :], axis=1)
