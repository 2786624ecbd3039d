"""The Importance type: one importance value per unit (sample, token, pixel, feature, mechanism).

Every analysis ends in :class:`Importance` objects; pages draw, compare and export them the same
way, and :func:`save` / :func:`load` carry them to a file (``.npz`` arrays + JSON provenance, never
pickle) and back.

Statistics (:meth:`Importance.stats`) and comparisons (:func:`compare`) follow their textbook
definitions; each formula is in the docstring.
"""
from __future__ import annotations

import functools
import io
import json
import math
import platform
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from core.errors import UserError

SCALES = ("mass", "score")
#: why concentration statistics are left out for scores (an arbitrary zero)
SCORE_NOTE = ("Concentration (Gini, entropy, effective number, top-k mass) is left out: these values are scores "
              "with an arbitrary zero (such as OOD scores), and shifting the zero would change them.")


class ImportanceError(UserError):
    """A saved-results file or a comparison that cannot be used; the message says why."""


@dataclass
class Importance:
    """``values`` (float32 or float64 as given, never copied; any shape, first axis = the units or a
    batch of maps), ``unit`` (e.g. "sample", "token", "pixel", "feature", "mechanism"), optional
    ``names`` of the units, and ``provenance`` (analysis, method, parameters, model, data, seed,
    versions: enough to re-run it; :func:`make_provenance`).

    ``scale``: "mass" when |value| is an amount of importance carried by the unit (attributions,
    token importance), so its concentration (Gini, entropy) means something; "score" when the
    values sit on a scale with an arbitrary zero (OOD scores), where it does not."""

    values: np.ndarray
    unit: str
    names: list[str] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    scale: str = "mass"

    def __post_init__(self):
        if self.scale not in SCALES:
            raise ValueError(f"scale must be 'mass' or 'score', got {self.scale!r}.")
        values = np.asarray(self.values)
        # keep the source's floating dtype (float32 attribution maps stay float32) and never copy them;
        # anything else (ints, bools, objects) becomes float64
        self.values = values if values.dtype in (np.float32, np.float64) else values.astype(np.float64)
        if self.names is not None:
            self.names = [str(n) for n in self.names]
            if len(self.names) != self.values.shape[-1] and len(self.names) != len(self.values):
                raise ValueError(f"{len(self.names)} names for {self.values.shape} values.")

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes)

    @property
    def label(self) -> str:
        p = self.provenance
        data = p.get("set") or p.get("data")
        if isinstance(data, dict):
            data = data.get("name") or data.get("filename")
        parts = [p.get("analysis"), p.get("method"), data]
        return " · ".join(str(x) for x in parts if x)

    def flat(self) -> np.ndarray:
        v = self.values.ravel()
        return v[np.isfinite(v)]

    def stats(self, top_k: int = 10) -> dict[str, float]:
        """Distribution statistics, computed in float64 over the finite values:

        - n, mean, std, min, q05, q25, median, q75, q95, max;
        - for ``scale="mass"``, the concentration of a = |v| (p = a/Σa): ``entropy`` H = −Σ p log p
          (nats), ``norm_entropy`` H/log n (1 = uniform), ``effective_n`` = exp H (how many equal units
          would carry the same entropy), ``gini`` = Σᵢ(2i−n−1)a₍ᵢ₎/(n Σa) over a sorted ascending
          (0 = uniform, (n−1)/n = one unit), and ``topk_mass`` = the share of Σa carried by the
          ``top_k`` largest units (``k`` is reported). For ``scale="score"`` these are NaN
          (:data:`SCORE_NOTE`)."""
        v = self.flat().astype(np.float64, copy=False)
        if v.size == 0:
            return {"n": 0}
        n = v.size
        q = np.quantile(v, [0.05, 0.25, 0.5, 0.75, 0.95])
        out = {"n": int(n), "mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
               "q05": float(q[0]), "q25": float(q[1]), "median": float(q[2]), "q75": float(q[3]),
               "q95": float(q[4]), "max": float(v.max())}
        nan = float("nan")
        conc = {"gini": nan, "entropy": nan, "norm_entropy": nan, "effective_n": nan, "topk_mass": nan,
                "k": int(min(top_k, n))}
        if self.scale == "mass":
            a = np.sort(np.abs(v))
            total = a.sum()
            k = conc["k"]
            if total > 0:
                p = a / total
                nz = p[p > 0]
                h = float(-(nz * np.log(nz)).sum())
                conc.update(gini=float(np.sum((2 * np.arange(1, n + 1) - n - 1) * a) / (n * total)), entropy=h,
                            effective_n=math.exp(h), topk_mass=float(a[n - k:].sum() / total))
            else:  # no importance anywhere: spread evenly by convention
                conc.update(gini=0.0, entropy=math.log(n), effective_n=float(n), topk_mass=k / n)
            conc["norm_entropy"] = conc["entropy"] / math.log(n) if n > 1 else 1.0
        out.update(conc)
        return out

    def summary(self) -> dict[str, float]:
        """:meth:`stats` with the default ``top_k``."""
        return self.stats()

    def concentration_note(self) -> str | None:
        return SCORE_NOTE if self.scale == "score" else None

    def lorenz(self, points: int = 201) -> tuple[np.ndarray, np.ndarray]:
        """The Lorenz curve of |v|: (share of units, share of importance they carry), units sorted
        ascending, at most ``points`` points (binned for large n). Its area gap to the diagonal is Gini/2."""
        a = np.sort(np.abs(self.flat().astype(np.float64, copy=False)))
        if a.size == 0 or a.sum() <= 0:
            x = np.linspace(0, 1, 2)
            return x, x
        cum = np.concatenate([[0.0], np.cumsum(a) / a.sum()])
        x = np.linspace(0, 1, len(cum))
        if len(cum) > points:
            idx = np.unique(np.linspace(0, len(cum) - 1, points).round().astype(int))
            x, cum = x[idx], cum[idx]
        return x, cum

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


# ---------------------------------------------------------------------------- comparing
def same_units(a: Importance, b: Importance) -> str | None:
    """None when ``a`` and ``b`` score the same units (same unit kind, shape, names and data), so that
    per-unit comparisons mean something; otherwise the reason they do not."""
    if a.unit != b.unit:
        return f"they score different units ({a.unit} vs {b.unit})"
    if a.values.shape != b.values.shape:
        return f"they have different shapes ({a.values.shape} vs {b.values.shape})"
    if (a.names is not None and b.names is not None) and a.names != b.names:
        return "their units have different names"
    da, db = a.provenance.get("data"), b.provenance.get("data")
    if da != db:
        return "they come from different data sets"
    return None


def js_divergence(x: np.ndarray, y: np.ndarray, bins: int = 50) -> float:
    """Jensen–Shannon divergence (base 2, in [0, 1]) of two samples, histogrammed on one shared binning
    over their joint range: JS = ½KL(p‖m) + ½KL(q‖m), m = (p+q)/2."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    lo, hi = min(x.min(), y.min()), max(x.max(), y.max())
    if not hi > lo:
        return 0.0
    edges = np.linspace(lo, hi, bins + 1)
    p = np.histogram(x, edges)[0].astype(np.float64)
    q = np.histogram(y, edges)[0].astype(np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a, b):
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / b[nz])).sum())

    return max(0.0, 0.5 * kl(p, m) + 0.5 * kl(q, m))


def topk_jaccard(a: np.ndarray, b: np.ndarray, k: int, by_magnitude: bool = True) -> float:
    """|top-k(a) ∩ top-k(b)| / |top-k(a) ∪ top-k(b)| over the same units (largest |value| first, or
    largest value when ``by_magnitude`` is False); ties broken by index."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    k = int(min(max(k, 1), a.size))
    ka = a if not by_magnitude else np.abs(a)
    kb = b if not by_magnitude else np.abs(b)
    ta = set(np.argsort(-np.nan_to_num(ka, nan=-np.inf), kind="stable")[:k].tolist())
    tb = set(np.argsort(-np.nan_to_num(kb, nan=-np.inf), kind="stable")[:k].tolist())
    return len(ta & tb) / len(ta | tb)


def compare(a: Importance, b: Importance, k: int = 10, bins: int = 50) -> dict[str, Any]:
    """How two importance distributions differ.

    Per unit, when both score the same units (:func:`same_units`): Spearman's ρ and Kendall's τ-b
    of the values, and the Jaccard overlap of their top-``k`` units (by |value| for mass, by value
    for scores). Otherwise ``rank_note`` says why those are left out. Always, on the finite values:
    the Jensen–Shannon divergence (base 2) on one shared ``bins``-bin histogram, the 1-Wasserstein
    distance, and the two-sample Kolmogorov–Smirnov statistic and p-value."""
    va, vb = a.flat().astype(np.float64), b.flat().astype(np.float64)
    out: dict[str, Any] = {}
    reason = same_units(a, b)
    if reason is None and va.size > 1:
        xa, xb = a.values.ravel().astype(np.float64), b.values.ravel().astype(np.float64)
        ok = np.isfinite(xa) & np.isfinite(xb)
        if ok.sum() > 1:
            out["spearman"] = float(sps.spearmanr(xa[ok], xb[ok]).statistic)
            out["kendall"] = float(sps.kendalltau(xa[ok], xb[ok]).statistic)
            by_mag = a.scale == "mass" and b.scale == "mass"
            out[f"top{min(k, int(ok.sum()))}_jaccard"] = topk_jaccard(xa, xb, k, by_magnitude=by_mag)
    else:
        out["rank_note"] = f"No per-unit comparison: {reason or 'too few units'}; only distribution-level numbers."
    if va.size and vb.size:
        out["js_divergence"] = js_divergence(va, vb, bins)
        out["wasserstein"] = float(sps.wasserstein_distance(va, vb))
        ks = sps.ks_2samp(va, vb)
        out["ks"] = float(ks.statistic)
        out["ks_pvalue"] = float(ks.pvalue)
    return out


def compare_matrix(items: dict[str, Importance], metric: str = "js_divergence", **kwargs) -> pd.DataFrame:
    """One comparison number for every pair (a square frame; the diagonal compares each with itself;
    NaN where the number does not apply, e.g. Spearman across different units)."""
    names = list(items)
    m = pd.DataFrame(np.nan, index=names, columns=names)
    for i, x in enumerate(names):
        for y in names[i:]:
            v = compare(items[x], items[y], **kwargs).get(metric, np.nan)
            v = v if isinstance(v, float) else np.nan
            m.loc[x, y] = m.loc[y, x] = v
    return m


# ---------------------------------------------------------------------------- provenance
@functools.cache
def _versions() -> tuple[tuple[str, str], ...]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("numpy", "torch", "timm", "scikit-learn", "scipy", "numba"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return tuple(out.items())


def versions() -> dict[str, str]:
    """Versions of Python and the packages a result depends on (read once: importlib.metadata is slow)."""
    return dict(_versions())


def make_provenance(analysis: str, method: str, parameters: dict | None = None, model: Any = None,
                    data: Any = None, seed: int | None = None, **extra) -> dict[str, Any]:
    """Provenance complete enough to re-run a result: the analysis, the method and its parameters, the
    model and data (specs or descriptions), the seed and the package versions (plus anything in ``extra``)."""
    return {"analysis": analysis, "method": method, "parameters": dict(parameters or {}), "model": model,
            "data": data, "seed": seed, **extra, "versions": versions()}


# ---------------------------------------------------------------------------- files
FORMAT = "importance-explorer/importances-v1"
MAX_FILE_BYTES = 512 * 2**20
MAX_ITEMS = 256


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist() if x.size <= 64 else f"<array {x.shape}>"
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    return str(x)


def save(items: dict[str, Importance]) -> bytes:
    """An ``.npz`` holding every distribution's values (``values_0``, ``values_1``, …) and a JSON
    ``manifest`` (names, units, scales, unit names, provenance): no pickle anywhere."""
    manifest = {"format": FORMAT, "items": []}
    arrays = {}
    for i, (name, imp) in enumerate(items.items()):
        arrays[f"values_{i}"] = np.ascontiguousarray(imp.values)
        manifest["items"].append({"name": str(name), "unit": imp.unit, "scale": imp.scale, "names": imp.names,
                                  "provenance": _jsonable(imp.provenance), "array": f"values_{i}"})
    arrays["manifest"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def load(content: bytes, filename: str = "the file") -> dict[str, Importance]:
    """The distributions of a file written by :func:`save`. Anything else (another file, a damaged
    one, a manifest that does not match its arrays) raises :class:`ImportanceError` naming what is
    wrong; nothing is unpickled, and sizes are checked before arrays are decoded."""
    what = f"'{filename}' is not a saved-results file of Importance Explorer"
    if len(content) > MAX_FILE_BYTES:
        raise ImportanceError(f"'{filename}' is {len(content) / 2**20:.0f} MB; saved results are limited to "
                              f"{MAX_FILE_BYTES // 2**20} MB.")
    try:
        zf = zipfile.ZipFile(io.BytesIO(content))
        members = {i.filename: i for i in zf.infolist()}
    except (zipfile.BadZipFile, ValueError, OSError):
        raise ImportanceError(f"{what} (it is not an .npz archive). Save results with the Importance page's "
                              "“Save kept results” button.") from None
    if "manifest.npy" not in members:
        raise ImportanceError(f"{what}: it has no manifest.")
    if sum(i.file_size for i in members.values()) > 4 * MAX_FILE_BYTES:
        raise ImportanceError(f"'{filename}' would decode to more than {4 * MAX_FILE_BYTES // 2**20} MB.")
    try:
        with np.load(io.BytesIO(content), allow_pickle=False) as npz:
            manifest = json.loads(bytes(npz["manifest"]).decode())
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise ImportanceError(f"{what}: its manifest names another format.")
            entries = manifest.get("items")
            if not isinstance(entries, list) or len(entries) > MAX_ITEMS:
                raise ImportanceError(f"{what}: its manifest lists no distributions (or more than {MAX_ITEMS}).")
            out: dict[str, Importance] = {}
            for i, e in enumerate(entries):
                if not isinstance(e, dict) or not isinstance(e.get("array"), str) or f"{e['array']}.npy" not in members:
                    raise ImportanceError(f"{what}: entry {i} of its manifest names no array in the file.")
                values = npz[e["array"]]
                if values.dtype not in (np.float32, np.float64):
                    raise ImportanceError(f"{what}: the values of entry {i} are {values.dtype}, not float32/float64.")
                provenance = e.get("provenance") if isinstance(e.get("provenance"), dict) else {}
                names = e.get("names")
                if names is not None and not isinstance(names, list):
                    raise ImportanceError(f"{what}: the unit names of entry {i} are not a list.")
                try:
                    imp = Importance(values, str(e.get("unit", "unit")), names=names, provenance=provenance,
                                     scale=e.get("scale", "mass"))
                except ValueError as err:
                    raise ImportanceError(f"{what}: entry {i} is inconsistent ({err}).") from None
                out[str(e.get("name", f"distribution {i}"))] = imp
            return out
    except ImportanceError:
        raise
    except (ValueError, KeyError, OSError, UnicodeDecodeError, zipfile.BadZipFile, EOFError) as err:
        raise ImportanceError(f"{what}, or it is damaged ({type(err).__name__}).") from None


__all__ = ["SCALES", "SCORE_NOTE", "Importance", "ImportanceError", "compare", "compare_matrix", "js_divergence", "load",
           "make_provenance", "same_units", "save", "topk_jaccard", "versions"]
