"""Seeded synthetic worlds for the OOD tests: Gaussian class clusters with a linear head."""
from __future__ import annotations

import numpy as np

from core.extract import ModelOutputs


def make_outputs(x: np.ndarray, w: np.ndarray, b: np.ndarray, labels=None, meta=None) -> ModelOutputs:
    logits = x @ w.T + b
    return ModelOutputs(logits=logits, features=x, labels=labels, preds=logits.argmax(1), head_weight=w,
                        head_bias=b, meta=meta or {"model": "synthetic", "data": "clusters"})


class ClusterWorld:
    """ReLU features around C non-negative prototypes on the first D/2 units, isotropic (plus an
    optional low-rank) within-class noise and the matching LDA head; OOD samples sit on unseen
    prototypes on the other units with a smaller norm, i.e. far from every class, and the head
    gives them near-equal logits."""

    def __init__(self, c: int = 4, d: int = 16, rank: int = 2, mix_scale: float = 0.0, radius: float = 6.0, ood_radius: float = 3.0,
                 iso: float = 0.4, seed: int = 0):
        g = np.random.default_rng(seed)
        half = d // 2
        self.protos = np.zeros((c, d))
        self.protos[:, :half] = np.abs(g.normal(0, 1, (c, half))) + 0.2
        self.protos *= radius / np.linalg.norm(self.protos, axis=1, keepdims=True)
        self.novel = np.zeros((c, d))
        self.novel[:, half:] = np.abs(g.normal(0, 1, (c, d - half))) + 0.2
        self.novel *= ood_radius / np.linalg.norm(self.novel, axis=1, keepdims=True)
        self.mix = mix_scale * g.normal(0, 1, (d, rank)) / np.sqrt(rank)
        self.iso = iso
        prec = np.linalg.inv(self.mix @ self.mix.T + iso**2 * np.eye(d))
        self.w = (self.protos @ prec).astype(np.float32)
        self.b = (-0.5 * np.einsum("cd,cd->c", self.protos @ prec, self.protos)).astype(np.float32)
        self.c, self.d = c, d

    def sample(self, n: int, seed: int, ood: bool = False, labels: bool = True) -> ModelOutputs:
        rng = np.random.default_rng(seed)
        y = rng.integers(0, self.c, n)
        centers = (self.novel if ood else self.protos)[y]
        x = centers + rng.standard_normal((n, self.mix.shape[1])) @ self.mix.T + rng.normal(0, self.iso, (n, self.d))
        x = np.maximum(x, 0).astype(np.float32)
        lab = (np.full(n, -1) if ood else y) if labels else None
        return make_outputs(x, self.w, self.b, lab)
