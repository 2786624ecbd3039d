"""Logit-based detectors: they read only the logits (TempScale also the fit-set labels)."""
from __future__ import annotations

import numpy as np
import torch

from ._stats import class_means, energy, f64, log_softmax, max_softmax, softmax
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
        return f64(outputs.logits).max(1)


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
        logp = log_softmax(outputs.logits)
        return (np.exp(logp) * logp).sum(1)


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
        p = softmax(outputs.logits)
        c = p.shape[1]
        m = min(self.params["top_m"] or 100, c)
        self.info["top_m"] = m
        top = np.partition(p, c - m, axis=1)[:, c - m:] if m < c else p
        g = self.params["gamma"]
        return -(top ** g * (1.0 - top) ** g).sum(1)


@register("tempscale", "Temperature scaling", "logit", {"logits", "labels"},
          "Guo et al., On Calibration of Modern Neural Networks, ICML 2017",
          params=(ParamSpec("temperature", None, "float",
                            "Temperature T; auto = fitted by minimising the NLL on the labelled fit set (LBFGS from 1.5).",
                            low=1e-3, high=1e4, optional=True, log=True),),
          requires_fit=True)
class TemperatureScaling(Detector):
    """**Temperature-scaled MSP.** score = max_c softmax(f/T)_c.

    T is fitted by minimising the negative log-likelihood of the labelled fit set with LBFGS,
    starting at T = 1.5 (optimised as log T so it stays positive). Samples whose label is outside
    the classes (−1) are skipped. Guo et al., ICML 2017.
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
    """T minimising mean cross-entropy of softmax(f/T) on labelled samples (labels outside 0..C-1 skipped)."""
    c = logits.shape[1]
    ok = (labels >= 0) & (labels < c)
    f = torch.from_numpy(f64(logits[ok]))
    y = torch.from_numpy(labels[ok].astype(np.int64))
    log_t = torch.tensor([np.log(init)], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-10, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(f / log_t.exp(), y)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    t = float(log_t.detach().exp())
    if not np.isfinite(t) or t <= 0:
        raise OODError("Temperature scaling did not converge on the fit set (got a non-finite temperature).")
    return t


@register("klm", "KL matching", "logit", {"logits"},
          "Hendrycks et al., Scaling Out-of-Distribution Detection for Real-World Settings, ICML 2022",
          requires_fit=True, class_conditional=True)
class KLMatching(Detector):
    """**KL matching.** score = −min_c KL(p ‖ d_c), p = softmax(f).

    d_c is the mean softmax of the fit samples *predicted* as class c (classes nobody is predicted
    as are left out). A test prediction should look like a typical prediction for its class.
    Hendrycks et al., ICML 2022.
    """

    def _fit_classes(self, outputs):
        return outputs.logits.argmax(1).astype(np.int64), "predictions"

    def _fit(self, outputs):
        p = softmax(outputs.logits)
        self.templates_, classes, _ = class_means(p, p.argmax(1))
        self.info["classes_with_template"] = int(len(classes))
        self._log_templates = np.log(np.maximum(self.templates_, np.finfo(np.float64).tiny))

    def _score(self, outputs):
        with torch.no_grad():
            logp = torch.log_softmax(torch.from_numpy(f64(outputs.logits)), 1)
            p = logp.exp()
            neg_entropy = (p * logp).sum(1)  # Σ p log p (p log p -> 0 as p -> 0, which exp/log gives)
            kl = neg_entropy[:, None] - p @ torch.from_numpy(self._log_templates).T
            return (-kl.amin(1).clamp_(min=0.0)).numpy()
