"""Run several attribution methods on the same samples, score them, and rank them.

The workflow behind the attribution page, free of Streamlit so a notebook runs the same code::

    result = run_attribution(model, dataset, indices=[0, 5, 9],
                             methods={"integrated-gradients": {"steps": 32}, "gradcam": {}, "rise": {"masks": 1000}})
    result.summary()          # one row per method: metric means, ranks, NaN count, seconds
    result.maps["gradcam"]    # float32, shaped like the model input [n, C, H, W]
    result.to_importances()   # Importance objects (unit "pixel" or "feature")

Every method runs once per (inputs, targets, parameters, metric settings); with a ``cache``
(anything with ``get_or_compute(key, compute)``) a rerun with one more method computes only that
one. A method that fails is reported in ``errors`` and the others still run; NaN in a map is
reported per sample in ``nan_samples`` and those samples get NaN metrics.
"""
from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from core.importance import Importance, make_provenance

from . import metrics as M
from .base import AttributionError, PassEstimate, card_of, input_facts, is_torch

#: metric groups a run can ask for; the first five are cheap, the last two re-run each method
METRICS = ("deletion", "insertion", "sparseness", "complexity", "localisation", "randomisation", "sensitivity")
DEFAULT_METRICS = ("deletion", "insertion", "sparseness", "complexity", "localisation")
#: metric group -> the columns it fills in the metrics table
COLUMNS = {"deletion": ["deletion_auc"], "insertion": ["insertion_auc"], "sparseness": ["sparseness"],
           "complexity": ["complexity"], "localisation": ["relevance_mass", "relevance_rank"],
           "randomisation": ["randomisation_similarity"], "sensitivity": ["max_sensitivity"]}
METRIC_LABELS = {
    "deletion_auc": "Deletion AUC (lower is better)", "insertion_auc": "Insertion AUC (higher is better)",
    "sparseness": "Sparseness, Gini (higher is sparser)", "complexity": "Complexity, entropy (lower is simpler)",
    "relevance_mass": "Relevance mass accuracy (higher is better)", "relevance_rank": "Relevance rank accuracy (higher is better)",
    "randomisation_similarity": "Similarity after weight randomisation (lower is better)",
    "max_sensitivity": "Max-sensitivity (lower is better)",
}
RANDOM_MAP = "random map"


@dataclass(frozen=True)
class MetricSettings:
    """How the metrics are computed (part of every cache key). ``step``: units per deletion/insertion
    step (None: one image row, or one feature); the substrates (None: "zero" for deletion and "blur"
    for insertion on images, as in RISE; the background mean for tables, whose zero means nothing
    in raw units); ``sensitivity_samples``/``sensitivity_radius``:
    max-sensitivity's draws and L∞ radius (share of the value range); ``randomisation``: "all"
    (one step, every layer randomised) or "cascading"; ``seed``: the random map and the noise."""

    step: int | None = None
    deletion_substrate: str | None = None
    insertion_substrate: str | None = None
    sensitivity_samples: int = 5
    sensitivity_radius: float = 0.02
    randomisation: str = "all"
    seed: int = 0


@dataclass
class _Inputs:
    """Everything resolved from the dataset or array: what the methods and metrics read."""

    kind: str
    x: Any
    indices: np.ndarray
    targets: np.ndarray
    labels: np.ndarray | None
    masks: np.ndarray | None
    images: np.ndarray | None
    rows: np.ndarray | None
    background: np.ndarray | None
    feature_names: list[str] | None
    class_names: list[str]
    data_name: str


@dataclass
class MethodRun:
    """One method's cached work: its map, facts, timing, metric rows (per sample) and curves."""

    values: np.ndarray
    params: dict[str, Any]
    info: dict[str, Any]
    seconds: float
    passes: PassEstimate
    metrics: pd.DataFrame
    curves: dict[str, M.Curve] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes + self.metrics.memory_usage(deep=False).sum()
                   + sum(c.scores.nbytes + c.fractions.nbytes for c in self.curves.values()))


@dataclass
class BaselineRun:
    """The random map's cached metric rows and curves."""

    metrics: pd.DataFrame
    curves: dict[str, M.Curve] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return int(self.metrics.memory_usage(deep=False).sum()
                   + sum(c.scores.nbytes + c.fractions.nbytes for c in self.curves.values()))


@dataclass
class AttributionResult:
    """Attributions of several methods on the same samples, with their quality metrics.

    ``kind``: "image" or "table". Per sample (length n): ``indices`` (rows of the dataset),
    ``targets`` (the class explained), ``labels`` (None without), ``preds`` and
    ``target_probability`` (the model's probability of the target). ``maps[method]``: float32,
    shaped like the model input (images [n, C, H, W], tables [n, F]). ``nan_samples[method]``:
    bool [n], samples whose map holds NaN or inf (report them, do not draw them). ``metrics``:
    one row per (method, sample) with the columns of the metrics asked for; ``baseline``: the same
    columns for a random map (relevance mass and rank: the object's area share, their expectation).
    ``curves[method]["deletion" | "insertion"]``: the :class:`~core.attribution.metrics.Curve` behind
    the AUCs (samples with a finite map only; also for ``"random map"``), for
    :func:`core.viz.attribution.perturbation_curves`.
    ``images`` (uint8 [n, H, W, 3]) and ``masks`` (bool [n, H, W], the object) for drawing image
    results; ``rows`` (float64 [n, F]) and ``feature_names`` for tables. ``errors[method]``: why a
    method produced nothing. ``passes``, ``seconds``, ``params`` and ``info`` per method.
    ``region_masks[name]``: other regions of the picked images at the maps' resolution (bool
    [n, H, W]; e.g. the Shapes world's corner marker), set by :mod:`core.attribution.workflow`.
    ``request`` and ``fingerprint``: the :class:`~core.attribution.workflow.AttributionRequest`
    that produced the result (None and "" for a direct :func:`run_attribution` call).
    """

    kind: str
    indices: np.ndarray
    targets: np.ndarray
    labels: np.ndarray | None
    preds: np.ndarray
    target_probability: np.ndarray
    class_names: list[str]
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    nan_samples: dict[str, np.ndarray] = field(default_factory=dict)
    params: dict[str, dict] = field(default_factory=dict)
    info: dict[str, dict] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    passes: dict[str, PassEstimate] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    baseline: pd.DataFrame = field(default_factory=pd.DataFrame)
    curves: dict[str, dict[str, M.Curve]] = field(default_factory=dict)
    metric_groups: tuple[str, ...] = ()
    images: np.ndarray | None = None
    masks: np.ndarray | None = None
    rows: np.ndarray | None = None
    feature_names: list[str] | None = None
    model_name: str = ""
    data_name: str = ""
    region_masks: dict[str, np.ndarray] = field(default_factory=dict)
    request: Any = None
    fingerprint: str = ""
    _pixel_maps: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def methods(self) -> list[str]:
        return list(self.maps)

    @property
    def unit(self) -> str:
        return "pixel" if self.kind == "image" else "feature"

    @property
    def metric_columns(self) -> list[str]:
        return [c for g in self.metric_groups for c in COLUMNS[g] if c in self.metrics.columns]

    def pixel_map(self, method: str) -> np.ndarray:
        """One value per pixel, float32 [n, H, W] (the channels summed), or the table map [n, F]; computed once."""
        if self.kind != "image":
            return self.maps[method]
        if method not in self._pixel_maps:
            self._pixel_maps[method] = self.maps[method].sum(1, dtype=np.float32)
        return self._pixel_maps[method]

    @property
    def nan_count(self) -> dict[str, int]:
        return {m: int(v.sum()) for m, v in self.nan_samples.items()}

    def summary(self) -> pd.DataFrame:
        """One row per method (then the random map): the mean of every metric over the samples with
        a finite map, ``rank_<metric>`` (1 = best, following the metric's direction) and
        ``mean_rank`` over the metrics, ``nan_samples``, ``seconds`` and ``passes``; sorted by
        ``mean_rank``. The random map is not ranked: it is the bar every method should clear."""
        cols = self.metric_columns
        rows = []
        for m in self.methods:
            part = self.metrics[self.metrics["method"] == m] if not self.metrics.empty else pd.DataFrame(columns=cols)
            row = {"method": m, **{c: float(np.nanmean(part[c])) if len(part) and np.isfinite(part[c]).any() else np.nan
                                   for c in cols}}
            row.update(nan_samples=int(self.nan_samples[m].sum()), seconds=self.seconds.get(m, np.nan),
                       passes=self.passes[m].equivalent if m in self.passes else np.nan)
            rows.append(row)
        table = pd.DataFrame(rows, columns=["method", *cols, "nan_samples", "seconds", "passes"])
        rank_cols = []
        for c in cols:
            if table[c].notna().sum() >= 1:
                ascending = M.DIRECTION[c] < 0
                table[f"rank_{c}"] = table[c].rank(ascending=ascending, method="min")
                rank_cols.append(f"rank_{c}")
        table["mean_rank"] = table[rank_cols].mean(axis=1) if rank_cols else np.nan
        table = table.sort_values(["mean_rank", "method"], kind="stable").reset_index(drop=True)
        if not self.baseline.empty:
            base = {"method": RANDOM_MAP, **{c: float(np.nanmean(self.baseline[c])) if c in self.baseline
                                             and np.isfinite(self.baseline[c]).any() else np.nan for c in cols}}
            table = pd.concat([table, pd.DataFrame([base])], ignore_index=True)
        return table

    def ranking(self) -> list[str]:
        """Methods from best to worst mean rank."""
        return [m for m in self.summary()["method"] if m != RANDOM_MAP]

    def best_methods(self) -> list[str]:
        """The methods tied at the best mean rank (empty without metrics)."""
        if not self.metric_columns:
            return []
        table = self.summary()
        ranked = table[table["method"] != RANDOM_MAP]
        if ranked.empty or not np.isfinite(ranked["mean_rank"]).any():
            return []
        best = ranked["mean_rank"].min()
        return [m for m, r in zip(ranked["method"], ranked["mean_rank"]) if r == best]

    def to_importances(self, methods=None) -> dict[str, Importance]:
        """One :class:`Importance` per method (all, or those in ``methods``): unit "pixel" (values
        float32 [n, H, W], the channel sum) or "feature" (float32 [n, F] with the feature names); the
        provenance (:func:`core.importance.make_provenance`) names the method, its parameters, the
        model, the data, the samples and targets, and, for a result of a request, the request that
        reruns this method alone (for :func:`core.codegen.snippet_from_provenance`)."""
        out = {}
        req = self.request
        ws = getattr(req, "workspace", None) or {}
        for m in self.methods:
            if methods is not None and m not in methods:
                continue
            values = self.pixel_map(m)
            request = None
            if req is not None:  # the same request with this one method (its samples are drawn the same way)
                request = req.as_dict()
                request["methods"] = {m: dict(req.methods.get(m) or {})}
            prov = make_provenance("attribution", m, dict(self.params.get(m, {})),
                                   model=ws.get("model", self.model_name), data=ws.get("data", self.data_name),
                                   seed=getattr(req, "seed", None), samples=self.indices.tolist(),
                                   targets=self.targets.tolist(), model_name=self.model_name, data_name=self.data_name,
                                   **({"workspace": ws, "request": request} if req is not None else {}))
            names = list(self.feature_names) if self.kind == "table" and self.feature_names else None
            out[m] = Importance(values=values, unit=self.unit, names=names, provenance=prov, scale="mass")
        return out

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays held (maps, channel-summed maps, images, masks, rows, metric tables)."""
        arrays = [*self.maps.values(), *self._pixel_maps.values(), *self.nan_samples.values(),
                  *self.region_masks.values(), self.indices,
                  self.targets, self.preds, self.target_probability, self.labels, self.images, self.masks, self.rows]
        total = sum(int(a.nbytes) for a in arrays if a is not None)
        total += sum(c.scores.nbytes + c.fractions.nbytes for per in self.curves.values() for c in per.values())
        for frame in (self.metrics, self.baseline):
            total += int(frame.memory_usage(deep=False).sum()) if not frame.empty else 0
        return total


# ---------------------------------------------------------------------------------------------- inputs
def _resize_masks(masks: np.ndarray, height: int, width: int) -> np.ndarray:
    if masks.shape[1:] == (height, width):
        return masks.astype(bool)
    t = torch.from_numpy(masks.astype(np.float32))[:, None]
    return (F.interpolate(t, size=(height, width), mode="nearest")[:, 0] > 0.5).numpy()


def _resolve(model, data, indices, masks, background, mask_key: str) -> _Inputs:
    from core.data.dataset import Dataset
    from core.extract import preprocess

    class_names = list(card_of(model).get("class_names") or getattr(model, "class_names", []) or [])
    if isinstance(data, Dataset):
        n_all = len(data)
        idx = np.arange(n_all) if indices is None else np.asarray(indices, np.int64).reshape(-1)
        if len(idx) == 0:
            raise AttributionError("No samples were picked: choose at least one.")
        if (idx < 0).any() or (idx >= n_all).any():
            raise AttributionError(f"Sample indices must lie in 0..{n_all - 1} for '{data.name}'.")
        labels = np.asarray(data.labels)[idx]
        class_names = class_names or list(data.class_names)
        if data.images is not None:
            if not is_torch(model):
                raise AttributionError(f"'{data.name}' holds images, which a {type(model).__name__} cannot read.")
            x = preprocess(data.images[idx], card_of(model))
            mk = data.masks.get(mask_key) if masks is None else masks  # one mask per dataset row
            if mk is not None:
                mk = _resize_masks(np.asarray(mk)[idx], x.shape[2], x.shape[3])
            return _Inputs("image", x, idx, np.zeros(0, np.int64), labels, mk, data.images[idx], None, None, None,
                           class_names, data.name)
        if data.frame is None:
            raise AttributionError(f"'{data.name}' holds neither images nor a table to explain.")
        names = list(getattr(model, "feature_names", None) or data.feature_names)
        missing = [c for c in names if c not in data.frame.columns]
        if missing:
            raise AttributionError(f"The table '{data.name}' lacks the model's feature column(s): {', '.join(missing[:8])}.")
        table = data.frame[names].to_numpy(np.float64)
        if background is None:
            train = getattr(model, "card", {}).get("train_index") if hasattr(model, "card") else None
            same = getattr(model, "card", {}).get("data_fingerprint") == data.fingerprint() if hasattr(model, "card") else False
            background = table[np.asarray(train, np.int64)] if (train is not None and same) else table
        return _Inputs("table", pd.DataFrame(table[idx], columns=names), idx, np.zeros(0, np.int64), labels, None, None,
                       table[idx], np.asarray(background, np.float64), names, class_names, data.name)
    # an array, tensor or DataFrame of model inputs
    facts = input_facts(model, data)
    n_all = facts["n"]
    idx = np.arange(n_all) if indices is None else np.asarray(indices, np.int64).reshape(-1)
    if len(idx) == 0 or (idx < 0).any() or (idx >= n_all).any():
        raise AttributionError(f"Sample indices must be given and lie in 0..{n_all - 1}.")
    if isinstance(data, pd.DataFrame):
        x = data.iloc[idx]
        names = [str(c) for c in data.columns]
    else:
        x = data[torch.from_numpy(idx)] if isinstance(data, torch.Tensor) else np.asarray(data)[idx]
        names = list(getattr(model, "feature_names", None) or []) or None
    mk = None if masks is None else np.asarray(masks)[idx].astype(bool)
    if facts["input_kind"] == "image":
        return _Inputs("image", x, idx, np.zeros(0, np.int64), None, mk, None, None, None, None, class_names, "inputs")
    rows = x.to_numpy(np.float64) if isinstance(x, pd.DataFrame) else np.asarray(x, np.float64)
    return _Inputs("table", x, idx, np.zeros(0, np.int64), None, None, None, rows,
                   None if background is None else np.asarray(background, np.float64), names, class_names, "inputs")


def _model_fingerprint(model) -> str:
    h = hashlib.blake2b(digest_size=12)
    h.update(type(model).__name__.encode())
    if is_torch(model):
        for name, tensor in model.state_dict().items():
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    else:
        try:
            h.update(pickle.dumps(model, protocol=4))
        except (pickle.PicklingError, TypeError, AttributeError):
            h.update(str(id(model)).encode())
    return h.hexdigest()


def _fingerprint(model, inp: _Inputs, settings: MetricSettings) -> str:
    h = hashlib.blake2b(digest_size=12)
    h.update(_model_fingerprint(model).encode())
    x = inp.x
    arr = x.numpy() if isinstance(x, torch.Tensor) else (x.to_numpy() if isinstance(x, pd.DataFrame) else np.asarray(x))
    h.update(np.ascontiguousarray(arr).tobytes())
    h.update(inp.targets.tobytes())
    for extra in (inp.masks, inp.background):
        h.update(b"-" if extra is None else np.ascontiguousarray(extra).tobytes())
    h.update(repr(settings).encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- costs
def _curve_cost(inp_facts: dict, step: int | None) -> int:
    units = inp_facts.get("n_pixels") or inp_facts.get("n_features") or 1
    step = step or (inp_facts.get("width") if inp_facts["input_kind"] == "image" else 1)
    return -(-units // step) + 1


def _method_cost(model, x, method: str, params: dict, groups: tuple[str, ...], settings: MetricSettings) -> PassEstimate:
    from . import estimate_passes

    base = estimate_passes(model, x, method, **params)
    facts = input_facts(model, x)
    n = facts["n"]
    total = base
    curve = PassEstimate(forward=_curve_cost(facts, settings.step) * n)
    for g in ("deletion", "insertion"):
        if g in groups:
            total = total + curve
    if "randomisation" in groups and is_torch(model):
        layers = 1
        if settings.randomisation == "cascading":
            from .metrics import randomisable_layers

            layers = len(randomisable_layers(model))
        total = total + base.scaled(layers)
    if "sensitivity" in groups:
        total = total + base.scaled(settings.sensitivity_samples)
    return total


def estimate_run(model, data, indices, methods: dict[str, dict], metrics: tuple[str, ...] = DEFAULT_METRICS,
                 settings: MetricSettings | None = None, masks=None, background=None, mask_key: str = "object"
                 ) -> dict[str, PassEstimate]:
    """Passes each method of :func:`run_attribution` will take with its metrics (and ``"random map"``
    for the random baseline's curves), before anything runs: what a page shows for confirmation.
    Methods that cannot run map to a zero estimate."""
    from . import REGISTRY, capabilities

    settings = settings or MetricSettings()
    inp = _resolve(model, data, indices, masks, background, mask_key)
    caps = capabilities(model, inp.x)
    out: dict[str, PassEstimate] = {}
    for m, params in methods.items():
        try:
            if m not in REGISTRY or REGISTRY.unavailable_reason(m, caps):
                out[m] = PassEstimate(0)
                continue
            out[m] = _method_cost(model, inp.x, m, dict(params or {}), tuple(metrics), settings)
        except AttributionError:  # a parameter the method refuses: run_attribution reports it
            out[m] = PassEstimate(0)
    facts = input_facts(model, inp.x)
    curves = sum(1 for g in ("deletion", "insertion") if g in metrics)
    out[RANDOM_MAP] = PassEstimate(forward=curves * _curve_cost(facts, settings.step) * facts["n"])
    return out


# ---------------------------------------------------------------------------------------------- run
def _metric_rows(model, inp: _Inputs, values: np.ndarray, method: str | None, params: dict, groups: tuple[str, ...],
                 settings: MetricSettings, finite: np.ndarray, progress: Callable[[float], None]
                 ) -> tuple[pd.DataFrame, dict[str, M.Curve]]:
    """Per-sample metrics of one map (NaN rows for samples whose map is not finite), and its
    deletion/insertion curves (over the samples with a finite map)."""
    n = len(inp.indices)
    frame = pd.DataFrame({"sample": inp.indices})
    ok = np.flatnonzero(finite)
    x_ok = inp.x[torch.from_numpy(ok)] if isinstance(inp.x, torch.Tensor) else (
        inp.x.iloc[ok] if isinstance(inp.x, pd.DataFrame) else np.asarray(inp.x)[ok])
    v_ok = values[ok]
    t_ok = inp.targets[ok]
    pmap = M.pixel_map(v_ok)

    def column(name: str, compute):
        col = np.full(n, np.nan)
        if len(ok):
            col[ok] = compute()
        frame[name] = col

    masks_ok = inp.masks[ok] if inp.masks is not None else None
    curves: dict[str, M.Curve] = {}
    image = inp.kind == "image"
    deletion_substrate = settings.deletion_substrate or ("zero" if image else "mean")
    insertion_substrate = settings.insertion_substrate or ("blur" if image else "mean")
    steps = [g for g in groups if g in METRICS]
    for k, g in enumerate(steps):
        progress(k / max(len(steps), 1))
        if g in ("deletion", "insertion") and len(ok):
            curve_fn = M.deletion_curve if g == "deletion" else M.insertion_curve
            curves[g] = curve_fn(model, x_ok, v_ok, t_ok, step=settings.step, background=inp.background,
                                 substrate=deletion_substrate if g == "deletion" else insertion_substrate)
            column(f"{g}_auc", curves[g].auc)
        elif g in ("deletion", "insertion"):
            column(f"{g}_auc", lambda: None)
        elif g == "sparseness":
            column("sparseness", lambda: M.sparseness(pmap))
        elif g == "complexity":
            column("complexity", lambda: M.complexity(pmap))
        elif g == "localisation" and masks_ok is not None:
            # Arras et al.'s definitions: positive relevance (evidence for the class) is what must lie on the object
            column("relevance_mass", lambda: M.relevance_mass_accuracy(pmap, masks_ok))
            column("relevance_rank", lambda: M.relevance_rank_accuracy(pmap, masks_ok))
        elif g == "randomisation" and method is not None and is_torch(model):
            column("randomisation_similarity", lambda: M.model_randomisation(
                model, x_ok, t_ok, method, params, order=settings.randomisation, seed=settings.seed,
                background=inp.background, reference=v_ok).similarity[-1])
        elif g == "sensitivity" and method is not None:
            column("max_sensitivity", lambda: M.max_sensitivity(
                model, x_ok, t_ok, method, params, radius=settings.sensitivity_radius,
                samples=settings.sensitivity_samples, seed=settings.seed, background=inp.background, reference=v_ok))
    progress(1.0)
    return frame, curves


def run_attribution(model, data, indices=None, methods: dict[str, dict] | None = None, *, target="predicted",
                    metrics: tuple[str, ...] = DEFAULT_METRICS, settings: MetricSettings | None = None, masks=None,
                    background=None, mask_key: str = "object", progress: Callable[[float, str], None] | None = None,
                    cache=None) -> AttributionResult:
    """Run ``methods`` (id -> parameters) on the samples ``indices`` of ``data`` and score them.

    ``data``: a :class:`core.data.Dataset` (images are preprocessed with the model's card; the
    dataset's ``masks[mask_key]`` become the ground truth; a table's background rows are the
    model's training rows when it was trained on this table) or model inputs (a tensor / array
    [N, C, H, W], or table rows as an array or DataFrame; ``masks`` [N, H, W] optional).
    ``target``: "predicted" (each sample's predicted class), "label" (its true class; a Dataset
    only), a class index, or one index per picked sample. ``metrics``: groups from
    :data:`METRICS` (localisation needs masks; randomisation a torch model; randomisation and
    sensitivity re-run the method, see :func:`estimate_run`). ``progress(fraction, message)`` is
    called as methods and metrics advance, in proportion to their estimated passes. ``cache``:
    anything with ``get_or_compute(key, compute)``; each method's map and metrics are cached under
    a key of the model's weights, the inputs, targets, parameters and metric settings.
    """
    from . import REGISTRY, explain, spec

    settings = settings or MetricSettings()
    methods = dict(methods or {})
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise AttributionError(f"Unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}.")
    groups = tuple(g for g in METRICS if g in metrics)
    inp = _resolve(model, data, indices, masks, background, mask_key)
    # the targets: one probe of the model gives predictions and probabilities
    from .base import Subject

    probe = Subject.build(model, inp.x, None, background=inp.background)
    probs = probe.predict_np(probe.x_np, probability=True) if probe.backend == "proba" else \
        probe.predict_torch(probe.x, probability=True).double().numpy()
    preds = probs.argmax(1)
    if isinstance(target, str):
        if target == "predicted":
            targets = preds.astype(np.int64)
        elif target == "label":
            if inp.labels is None:
                raise AttributionError("target='label' needs a dataset with labels.")
            targets = np.asarray(inp.labels, np.int64)
            bad = (targets < 0) | (targets >= probs.shape[1])
            if bad.any():
                raise AttributionError(f"{int(bad.sum())} picked sample(s) have no class the model knows (label -1); "
                                       "explain the predicted class instead.")
        else:
            raise AttributionError(f"target must be 'predicted', 'label', a class index or one per sample; got {target!r}.")
    else:
        from .base import resolve_targets

        targets = resolve_targets(target, len(inp.indices), probs.shape[1], lambda: preds)
    inp.targets = targets
    result = AttributionResult(
        kind=inp.kind, indices=inp.indices, targets=targets, labels=inp.labels, preds=preds.astype(np.int64),
        target_probability=probs[np.arange(len(targets)), targets].astype(np.float32), class_names=inp.class_names,
        metric_groups=tuple(g for g in groups if g != "localisation" or inp.masks is not None),
        images=inp.images, masks=inp.masks, rows=inp.rows, feature_names=inp.feature_names,
        model_name=str(card_of(model).get("name") or type(model).__name__), data_name=inp.data_name)
    key_base = _fingerprint(model, inp, settings) if cache is not None else ""
    from . import capabilities

    caps = capabilities(model, inp.x)

    # progress in proportion to each method's estimated work
    weights = {}
    for m, params in methods.items():
        try:
            weights[m] = max(_method_cost(model, inp.x, m, dict(params or {}), groups, settings).equivalent, 1)
        except AttributionError:
            weights[m] = 1
    facts = input_facts(model, inp.x)
    curves = sum(1 for g in ("deletion", "insertion") if g in groups)
    weights[RANDOM_MAP] = max(curves * _curve_cost(facts, settings.step) * facts["n"], 1)
    total_weight = float(sum(weights.values()))
    done_weight = 0.0

    def report(fraction: float, message: str):
        if progress is not None:
            progress(min(1.0, fraction), message)

    rows = []
    for m, params in methods.items():
        params = dict(params or {})
        w = weights.get(m, 1)
        if m not in REGISTRY:
            result.errors[m] = f"unknown method '{m}'."
            done_weight += w
            continue
        name = spec(m).name
        start = done_weight / total_weight
        reason = REGISTRY.unavailable_reason(m, caps)
        if reason:  # hidden on the page with this reason; never computed or cached
            result.errors[m] = reason
            done_weight += w
            continue

        def compute(m=m, params=params, name=name, start=start, w=w) -> MethodRun:
            exp = explain(model, inp.x, targets, m, background=inp.background,
                          progress=lambda f: report(start + 0.5 * f * w / total_weight, f"{name}: attributions"),
                          **params)
            values = np.asarray(exp.values, np.float32)
            finite = np.isfinite(values.reshape(len(values), -1)).all(1)
            frame, curves = _metric_rows(model, inp, values, m, exp.params, groups, settings, finite,
                                         lambda f: report(start + (0.5 + 0.5 * f) * w / total_weight, f"{name}: metrics"))
            return MethodRun(values, exp.params, exp.info, exp.seconds, exp.passes, frame, curves)

        try:
            key = f"attribution|{key_base}|{m}|{sorted(spec(m).validate_params(params, AttributionError).items())}|{groups}"
            run = cache.get_or_compute(key, compute) if cache is not None else compute()
        except AttributionError as exc:
            result.errors[m] = str(exc)
            done_weight += w
            continue
        except Exception as exc:  # one broken method must not take the others down; say what happened
            result.errors[m] = f"{type(exc).__name__}: {exc}"
            done_weight += w
            continue
        done_weight += w
        result.maps[m] = run.values
        result.nan_samples[m] = ~np.isfinite(run.values.reshape(len(run.values), -1)).all(1)
        result.params[m] = dict(run.params)
        result.info[m] = dict(run.info)
        result.seconds[m] = run.seconds
        result.passes[m] = run.passes
        if run.curves:
            result.curves[m] = dict(run.curves)
        rows.append(run.metrics.assign(method=m))

    # the random map: a seeded uniform map (its deletion/insertion/shape), and the area share for localisation
    report(done_weight / total_weight, "random map")
    if groups:
        def random_baseline() -> pd.DataFrame:
            rng = np.random.default_rng(settings.seed)
            shape = tuple(np.shape(inp.x))
            random_values = rng.random(shape).astype(np.float32)
            if inp.kind == "image":  # one value per pixel, as the spatial methods give
                random_values = np.broadcast_to(random_values[:, :1], shape).copy()
            base_groups = tuple(g for g in groups if g not in ("randomisation", "sensitivity"))
            frame, curves = _metric_rows(model, inp, random_values, None, {}, base_groups, settings,
                                         np.ones(len(inp.indices), bool), lambda f: None)
            if inp.masks is not None and "localisation" in groups:
                share = M.random_map_baseline(inp.masks)  # the expectation, not one draw
                frame["relevance_mass"] = share
                frame["relevance_rank"] = share
            return BaselineRun(frame.assign(method=RANDOM_MAP), curves)

        key = f"attribution|{key_base}|{RANDOM_MAP}|{groups}"
        base_run = cache.get_or_compute(key, random_baseline) if cache is not None else random_baseline()
        result.baseline = base_run.metrics
        if base_run.curves:
            result.curves[RANDOM_MAP] = dict(base_run.curves)
    cols = ["method", "sample", *[c for g in groups for c in COLUMNS[g]]]
    result.metrics = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=cols)
    report(1.0, "done")
    return result


__all__ = ["COLUMNS", "DEFAULT_METRICS", "METRICS", "METRIC_LABELS", "RANDOM_MAP", "AttributionResult", "MethodRun",
           "MetricSettings", "estimate_run", "run_attribution"]
