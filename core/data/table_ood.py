"""Synthetic out-of-distribution rows for a table, in the three families of ADBench.

Han et al., "ADBench: Anomaly Detection Benchmark", NeurIPS 2022, §4.3 generate anomalies of known
type from a real table's normal rows. We follow their definitions with two simplifications, noted
below, that keep the generator closed-form:

``global``      each column uniform on its observed range widened α = 1.1 times around its middle.
                (ADBench draws Unif(α·min, α·max), which for a positive column is a shifted, not a
                widened, range.)
``local``       per class c, x ~ N(μ_c, α·Σ_c) with α = 5, classes in the reference's proportions.
                (ADBench scales the covariances of a Gaussian mixture fitted to the normal rows;
                the class-conditional Gaussians are that mixture with the labels as components.)
``dependency``  every column drawn on its own from its empirical marginal: the marginals are kept,
                the dependence between columns is destroyed (ADBench: independence copula on
                kernel-density marginals).

"global" rows are far from the data; "local" and "dependency" rows overlap its marginals and are
harder to flag (near-OOD).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .dataset import DataError, Dataset

KINDS = ("dependency", "local", "global")
GROUP = {"dependency": "near", "local": "near", "global": "far"}
DEFAULT_ALPHA = {"global": 1.1, "local": 5.0, "dependency": None}
DESCRIPTION = {
    "dependency": "each column resampled on its own from its marginal (marginals kept, correlations destroyed)",
    "local": "class-conditional Gaussians with 5× the covariance",
    "global": "each column uniform on its range widened 1.1×",
}


def table_outliers(reference: Dataset, kind: str, n: int | None = None, seed: int = 0,
                   alpha: float | None = None) -> Dataset:
    """``n`` synthetic OOD rows (default: as many as ``reference``) with ``reference``'s feature columns.

    Labels are -1 (no class). Statistics come from ``reference`` only; pass the training split to
    keep the evaluation rows out of them.
    """
    if kind not in KINDS:
        raise DataError(f"Unknown table OOD kind {kind!r}; choose one of {', '.join(KINDS)}.")
    if reference.frame is None:
        raise DataError(f"Synthetic table OOD rows need a table; '{reference.name}' is a {reference.kind} dataset.")
    x, y = reference.table_arrays()
    if len(x) < 2:
        raise DataError(f"'{reference.name}' has {len(x)} row(s); at least 2 are needed to build OOD rows from it.")
    if not np.isfinite(x).all():
        raise DataError(f"'{reference.name}' has missing or infinite feature values.")
    n = len(x) if n is None else int(n)
    if n < 0:
        raise DataError(f"n must be non-negative, got {n}.")
    alpha = DEFAULT_ALPHA[kind] if alpha is None else float(alpha)
    rng = np.random.default_rng([seed, KINDS.index(kind), 0x7AB1E])
    d = x.shape[1]
    if kind == "global":
        lo, hi = x.min(0), x.max(0)
        mid, half = (lo + hi) / 2.0, (hi - lo) / 2.0 * alpha
        out = rng.uniform(mid - half, mid + half, size=(n, d))
    elif kind == "dependency":
        out = np.empty((n, d))
        for j in range(d):
            out[:, j] = x[rng.integers(0, len(x), n), j]
    else:
        out = _local(x, y, n, alpha, rng)
    frame = pd.DataFrame(out, columns=list(reference.feature_names))
    return Dataset(name=f"{reference.name} · {kind} OOD", kind="table", labels=np.full(n, -1, np.int64), class_names=[],
                   frame=frame, label=None,
                   params={"reference": reference.name, "kind": kind, "alpha": alpha, "n": n, "seed": seed,
                           "description": DESCRIPTION[kind]})


def _local(x: np.ndarray, y: np.ndarray, n: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    classes = [c for c in np.unique(y) if c >= 0 and (y == c).sum() >= 2]
    if not classes:  # no usable labels: one Gaussian over all rows
        groups, weights = [x], np.ones(1)
    else:
        groups = [x[y == c] for c in classes]
        weights = np.array([len(g) for g in groups], float)
    weights /= weights.sum()
    counts = rng.multinomial(n, weights)
    scale = np.var(x, axis=0).mean() * 1e-9 + 1e-12  # a ridge so that singular covariances stay PSD in float64
    parts = []
    for g, k in zip(groups, counts):
        if k == 0:
            continue
        mu = g.mean(0)
        cov = np.atleast_2d(np.cov(g, rowvar=False, bias=True)) + scale * np.eye(g.shape[1])
        parts.append(rng.multivariate_normal(mu, alpha * cov, size=int(k), method="eigh"))
    out = np.concatenate(parts) if parts else np.empty((0, x.shape[1]))
    return out[rng.permutation(len(out))]
