"""The Importance type: one importance value per unit (sample, token, pixel, feature, mechanism).

Every analysis ends in Importance objects; pages draw, compare and export them the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats


@dataclass
class Importance:
    """``values`` (float32 or float64 as given, never copied; any shape, first axis = the units or a
    batch of maps), ``unit`` (e.g.
    "sample", "token", "pixel", "feature", "mechanism"), optional ``names`` of the units, and
    ``provenance`` (analysis, method, parameters, model, data).

    ``scale``: "mass" when |value| is an amount of importance carried by the unit (attributions,
    token importance), so its concentration (Gini, entropy) means something; "score" when the
    values sit on a scale with an arbitrary zero (OOD scores), where it does not."""

    values: np.ndarray
    unit: str
    names: list[str] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    scale: str = "mass"

    def __post_init__(self):
        if self.scale not in ("mass", "score"):
            raise ValueError(f"scale must be 'mass' or 'score', got {self.scale!r}.")
        values = np.asarray(self.values)
        # keep the source's floating dtype (float32 attribution maps stay float32) and never copy them;
        # anything else (ints, bools, objects) becomes float64
        self.values = values if values.dtype in (np.float32, np.float64) else values.astype(np.float64)
        if self.names is not None and len(self.names) != self.values.shape[-1] and len(self.names) != len(self.values):
            raise ValueError(f"{len(self.names)} names for {self.values.shape} values.")

    @property
    def label(self) -> str:
        p = self.provenance
        parts = [p.get("analysis"), p.get("method"), p.get("data")]
        return " · ".join(str(x) for x in parts if x)

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes)

    def flat(self) -> np.ndarray:
        v = self.values.ravel()
        return v[np.isfinite(v)]

    def summary(self) -> dict[str, float]:
        """Distribution statistics: mean, std, quantiles, and the Gini (sparseness) and entropy of |v|
        (NaN for ``scale="score"``: shifting a score's zero would change them). Computed in float64."""
        v = self.flat().astype(np.float64, copy=False)
        if v.size == 0:
            return {"n": 0}
        n = v.size
        gini = entropy = float("nan")
        if self.scale == "mass":
            a = np.sort(np.abs(v))
            total = a.sum()
            gini = float(np.sum((2 * np.arange(1, n + 1) - n - 1) * a) / (n * total)) if total > 0 else 0.0
            p = a / total if total > 0 else np.full(n, 1.0 / n)
            entropy = float(-(p[p > 0] * np.log(p[p > 0])).sum())
        q = np.quantile(v, [0.05, 0.25, 0.5, 0.75, 0.95])
        return {"n": int(n), "mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
                "q05": float(q[0]), "q25": float(q[1]), "median": float(q[2]), "q75": float(q[3]),
                "q95": float(q[4]), "max": float(v.max()), "gini": gini, "entropy": entropy}

    def to_frame(self) -> pd.DataFrame:
        """Long format: one row per unit (per map element for arrays of rank > 1)."""
        v = self.values
        if v.ndim == 1:
            df = pd.DataFrame({"unit": self.names if self.names is not None else np.arange(len(v)), "value": v})
        else:
            idx = np.indices(v.shape).reshape(v.ndim, -1).T
            df = pd.DataFrame(idx, columns=[f"axis{i}" for i in range(v.ndim)])
            df["value"] = v.ravel()
        for k, val in self.provenance.items():
            if isinstance(val, (str, int, float, bool)) or val is None:
                df[k] = val
        return df


def compare(a: Importance, b: Importance) -> dict[str, float]:
    """How two importance distributions differ: rank agreement (Spearman, Kendall) when they
    score the same units (same shape and same data in their provenance), and distribution
    distance (KS, Wasserstein) always."""
    va, vb = a.flat(), b.flat()
    out: dict[str, float] = {}
    same_units = a.values.shape == b.values.shape and a.provenance.get("data") == b.provenance.get("data")
    if same_units and va.size > 1:  # rank agreement only makes sense over the same samples/tokens/features
        out["spearman"] = float(stats.spearmanr(a.values.ravel(), b.values.ravel()).statistic)
        out["kendall"] = float(stats.kendalltau(a.values.ravel(), b.values.ravel()).statistic)
    if va.size and vb.size:
        ks = stats.ks_2samp(va, vb)
        out["ks"] = float(ks.statistic)
        out["ks_pvalue"] = float(ks.pvalue)
        out["wasserstein"] = float(stats.wasserstein_distance(va, vb))
    return out
