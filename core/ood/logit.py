"""Logit-based detectors: they read only the logits (TempScale also the fit-set labels)."""
from __future__ import annotations

import numpy as np

from core.kernels.rows import row_max
from core.kernels.softmax import min_kl_to_templates, softmax_class_means, tempered_moments

from ._stats import energy, f64, generalized_entropy_score, max_softmax, neg_entropy
from .base import Detector, OODError, ParamSpec, register


@register("msp", "MSP", "logit", {"logits"},
          "Hendrycks & Gimpel, A Baseline for Detecting Misclassified and Out-of-Distribution Examples, ICLR 2017")
class MaxSoftmax(Detector):
    """**Maximum softmax probability.** score = max_c softmax(f)_c.

    The baseline: a confident prediction is taken as in-distribution.
    Hendrycks & Gimpel, ICLR 2017.
    """

    def _score(self, outputs):
        return max_softmax(outputs.logits)


@register("maxlogit", "MaxLogit", "logit", {"logits"},
          "Hendrycks et al., Scaling Out-of-Distribution Detection for Real-World Settings, ICML 2022")
class MaxLogit(Detector):
    """**Maximum logit.** score = max_c f_c.

    Unlike MSP it keeps the logits' scale, which carries evidence lost by the softmax.
    Hendrycks et al., ICML 2022.
    """

    def _score(self, outputs):
        return row_max(outputs.logits)  # exact for float32 logits; only the [N] result is widened


@register("energy", "Energy", "logit", {"logits"},
          "Liu et al., Energy-based Out-of-distribution Detection, NeurIPS 2020",
          params=(ParamSpec("temperature", 1.0, "float", "Temperature T of the energy T·logsumexp(f/T).",
                            low=1e-3, high=1e4, log=True),))
class Energy(Detector):
    """**Energy score.** score = T·logsumexp(f/T) (the negative free energy), T = 1.

    A smooth version of MaxLogit that uses all logits. Liu et al., NeurIPS 2020.
    """

    def _score(self, outputs):
        return energy(outputs.logits, self.params["temperature"])


@register("entropy", "Entropy", "logit", {"logits"},
          "Shannon entropy of the predictive distribution (see e.g. Hendrycks et al., ICML 2022)")
class Entropy(Detector):
    """**Negative predictive entropy.** score = −H(p) = Σ_c p_c log p_c, p = softmax(f).

    A flat prediction (high entropy) is taken as out-of-distribution.
    """

    def _score(self, outputs):
        return neg_entropy(outputs.logits)


@register("gen", "GEN", "logit", {"logits"},
          "Liu, Lochman & Zach, GEN: Pushing the Limits of Softmax-Based Out-of-Distribution Detection, CVPR 2023",
          params=(ParamSpec("gamma", 0.1, "float", "Exponent γ of the generalised entropy.", low=1e-3, high=1.0),
                  ParamSpec("top_m", None, "int", "Number M of largest probabilities summed; auto = min(100, C).",
                            low=1, high=100_000, optional=True)))
class GeneralizedEntropy(Detector):
    """**Generalised entropy.** score = −Σ_{top-M p_i} p_i^γ (1 − p_i)^γ with γ = 0.1 and M = min(100, C).

    Only the M largest probabilities enter, so the long tail of tiny probabilities (which dominates
    Shannon entropy for many classes) is ignored. Liu, Lochman & Zach, CVPR 2023.
    """

    def _score(self, outputs):
        m = min(self.params["top_m"] or 100, outputs.num_classes)
        self.info["top_m"] = m
        return generalized_entropy_score(outputs.logits, self.params["gamma"], m)


@register("tempscale", "Temperature scaling", "logit", {"logits", "labels"},
          "Guo et al., On Calibration of Modern Neural Networks, ICML 2017",
          params=(ParamSpec("temperature", None, "float",
                            "Temperature T; auto = fitted by minimising the NLL on the labelled fit set (Newton on 1/T from T = 1.5).",
                            low=1e-3, high=1e4, optional=True, log=True),),
          requires_fit=True, fit_on="validation")
class TemperatureScaling(Detector):
    """**Temperature-scaled MSP.** score = max_c softmax(f/T)_c.

    T is fitted by minimising the negative log-likelihood of labelled *validation* data (the suite
    and the page pass a held-out split when the data has one, e.g. the Shapes world's "val" split;
    otherwise the fit set is used, which is optimistic if the model was trained on it). The NLL is
    convex in 1/T: bracketed Newton from T = 1.5, the optimum LBFGS on log T reaches. Samples whose
    label is outside the classes (−1) are skipped. Guo et al., ICML 2017.
    """

    def _needs_labels(self):
        return self.params["temperature"] is None

    def _fit(self, outputs):
        if self.params["temperature"] is not None:
            self.temperature_ = float(self.params["temperature"])
        else:
            self.temperature_ = fit_temperature(outputs.logits, outputs.labels)
        self.info["temperature"] = self.temperature_

    def _score(self, outputs):
        return max_softmax(outputs.logits, self.temperature_)


def fit_temperature(logits: np.ndarray, labels: np.ndarray, init: float = 1.5, max_iter: int = 200) -> float:
    """T minimising mean cross-entropy of softmax(f/T) on labelled samples (labels outside 0..C-1 skipped).

    The NLL is convex in β = 1/T: L(β) = mean_i[logsumexp(β f_i) − β f_iy] with L'(β) = mean_i[E_p f − f_iy]
    and L''(β) = mean_i Var_p(f) (p = softmax(β f_i)). L' is increasing, so a bracketed Newton iteration
    on L'(β) = 0 from β = 1/init reaches the optimum LBFGS on log T reaches. Each step is one fused pass over
    the logits (:func:`core.kernels.softmax.tempered_moments`: float32 exponentials for float32 logits,
    float64 sums), so T carries ~1e-7 relative error.
    """
    c = logits.shape[1]
    ok = (labels >= 0) & (labels < c)
    if not ok.any():
        raise OODError("Temperature scaling needs labelled fit samples with labels in 0..C-1.")
    f = logits[ok] if not ok.all() else logits
    y = labels[ok] if not ok.all() else labels
    # shift every row by its label logit (softmax, E_p f − f_y and Var_p f are unchanged): L'(β) is then a
    # mean of small numbers rather than a difference of two large ones (kept in the logits' float precision)
    f = np.asarray(f) if np.asarray(f).dtype in (np.float32, np.float64) else f64(f)
    g = np.ascontiguousarray(f - np.take_along_axis(f, y.astype(np.int64)[:, None], axis=1))

    state = (1.0 / init, 0.0, np.inf)
    for _ in range(max_iter):
        state, done = newton_temperature_step(state, *tempered_moments(g, state[0]))  # one fused float64 pass
        if done:
            break
    return temperature_of(state)


def newton_temperature_step(state: tuple[float, float, float], grad: float,
                            hess: float) -> tuple[tuple[float, float, float], bool]:
    """One bracketed Newton step of :func:`fit_temperature` on β = 1/T: ``state = (β, lo, hi)``, ``grad`` and
    ``hess`` are L'(β) and L''(β) (the mean moments at β). Returns the next state and whether to stop. Shared
    with the fit from merged statistics (:mod:`core.ood.mergeable`), where every step is one pass over the
    blocks."""
    beta, lo, hi = state
    if not (np.isfinite(grad) and np.isfinite(hess)):
        return state, True
    if abs(beta * grad) <= 1e-10:  # |dL/d log T| at LBFGS's tolerance_grad: converged (or a separable
        return state, True         # fit set, whose optimum T → 0 is only approached; stop as LBFGS did)
    if grad < 0:
        lo = max(lo, beta)
    else:
        hi = min(hi, beta)
    nb = beta - grad / hess if hess > 0 else np.nan
    if not (lo < nb < hi):  # outside the bracket: bisect (or grow β while no upper bound is known)
        nb = 0.5 * (lo + hi) if np.isfinite(hi) else 2.0 * max(beta, lo)
    done = abs(nb - beta) <= 1e-7 * abs(nb)  # quadratic convergence: the next step would be ~1e-14
    return (nb, lo, hi), done


def temperature_of(state: tuple[float, float, float]) -> float:
    t = 1.0 / state[0]
    if not np.isfinite(t) or t <= 0:
        raise OODError("Temperature scaling did not converge on the fit set (got a non-finite temperature).")
    return t


def label_shifted_logits(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """f − f_y per row (rows with a label outside 0..C−1 dropped), in the logits' float precision."""
    c = logits.shape[1]
    ok = (labels >= 0) & (labels < c)
    f = logits[ok] if not ok.all() else logits
    y = labels[ok] if not ok.all() else labels
    f = np.asarray(f) if np.asarray(f).dtype in (np.float32, np.float64) else f64(f)
    return np.ascontiguousarray(f - np.take_along_axis(f, y.astype(np.int64)[:, None], axis=1))


@register("klm", "KL matching", "logit", {"logits"},
          "Hendrycks et al., Scaling Out-of-Distribution Detection for Real-World Settings, ICML 2022",
          requires_fit=True, class_conditional=True, fit_on="validation")
class KLMatching(Detector):
    """**KL matching.** score = −min_c KL(p ‖ d_c), p = softmax(f).

    d_c is the mean softmax of the held-out ID *validation* samples predicted as class c (the fit
    set when no validation set is given; classes nobody is predicted as are left out). A test
    prediction should look like a typical prediction for its class. Hendrycks et al., ICML 2022.
    """

    def _fit_classes(self, outputs):
        # one parallel pass: each row's softmax (float64) summed per predicted class, and the predictions
        # (argmax f = argmax softmax(f), the first maximum on ties as NumPy's argmax)
        self._class_means = softmax_class_means(outputs.logits)
        return self._class_means[2], "predictions"

    def _fit(self, outputs):
        self.templates_, classes, _ = self._class_means
        del self._class_means
        self.info["classes_with_template"] = int(len(classes))
        self._log_templates = np.log(np.maximum(self.templates_, np.finfo(np.float64).tiny))

    def _score(self, outputs):
        # Σ p log p − Σ p log t_k per template, minimised over k, in one pass per row (float64 softmax)
        return -min_kl_to_templates(outputs.logits, self._log_templates)
