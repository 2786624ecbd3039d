"""Synthetic .npz model outputs for the OOD page's AppTests (imported by the test modules of this folder)."""
import io

import numpy as np


def npz_outputs(n, d, classes=3, ood=False, seed=0, nan=False, scale=None) -> bytes:
    """Class clusters (ID) or unclustered low-norm features (OOD) with a linear head, as .npz bytes. ``scale``
    moves the clusters' centres towards the origin (0.5: a near-OOD set the detectors only partly separate);
    ``nan`` puts one NaN in the logits."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres = np.random.default_rng(0).normal(0, 4, (classes, d))
    if scale is None:
        scale = 0.0 if ood else 1.0
    feats = rng.normal(0, 1, (n, d)) + scale * centres[y]
    w = centres / 4
    b = np.zeros(classes)
    logits = feats @ w.T + b
    if nan:
        logits[0, 0] = np.nan
    buf = io.BytesIO()
    np.savez(buf, logits=logits, features=feats, labels=y, head_weight=w, head_bias=b)
    return buf.getvalue()
