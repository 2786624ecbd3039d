"""A small causal world with known mechanisms for the shift-attribution tests.

Graph: z → x ← y, with z a covariate and y the label:
- P(z): z ~ N(z_mean, 1)                                              (a covariate marginal)
- P(y): y ~ Bernoulli(prior)                                           (the label prior)
- P(x | y, z): x ~ N(m_y, (s_y·e^{z/2})²), m_0 = −1, m_1 = m1, s_0 = 0.5, s_1 = 1.0   (the conditional)

The model is fixed (:func:`predict_proba`). Each mechanism's shift changes its performance: a
larger z mean adds noise, a larger prior favours the class the model gets wrong more often
(class 1), a smaller m1 moves class 1 towards class 0.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

GRAPH = {"z": [], "y": [], "x": ["y", "z"]}
SHIFTS = {"z": dict(z_mean=1.2), "y": dict(prior=0.9), "x": dict(m1=0.5)}
SCALE = (0.5, 1.0)


def sample(n: int, seed: int, z_mean: float = 0.0, prior: float = 0.5, m1: float = 1.5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    z = rng.normal(z_mean, 1.0, n)
    y = (rng.random(n) < prior).astype(np.int64)
    sd = np.where(y == 1, SCALE[1], SCALE[0]) * np.exp(0.5 * z)
    x = np.where(y == 1, m1, -1.0) + sd * rng.normal(0, 1, n)
    return pd.DataFrame({"z": z, "y": y, "x": x})


def predict_proba(frame: pd.DataFrame) -> np.ndarray:
    """A fixed model that sees the noise level but puts its threshold too close to class 1:
    P(y = 1 | x, z) = 0.02 + 0.96·σ(3·(x − 1)/e^{z/2}). It misses a third of class 1 at z = 0 and
    almost none of class 0, so every mechanism's shift moves its accuracy and its log loss; its
    confidence is capped at 98% so that the log loss has no heavy tail."""
    x, z = frame["x"].to_numpy(), frame["z"].to_numpy()
    p1 = 0.02 + 0.96 / (1 + np.exp(-np.clip(3.0 * (x - 1.0) / np.exp(0.5 * z), -50, 50)))
    return np.column_stack([1 - p1, p1])


class DictCache:
    """The smallest cache a workflow accepts: ``get_or_compute`` over a dict, counting computations."""

    def __init__(self):
        self.items, self.computed = {}, 0

    def get_or_compute(self, key, compute):
        if key not in self.items:
            self.computed += 1
            self.items[key] = compute()
        return self.items[key]
