"""The attribution analysis of a workspace, end to end and without any UI: which samples to explain,
which methods apply, what a run will cost, and the run itself behind a progress callback.

The attribution page, the audit CLI and a notebook call the same function::

    from core.workspace import Resolver, default_workspace
    from core.attribution.workflow import AttributionRequest, evaluate, default_request

    resolver = Resolver()
    request = default_request(resolver, default_workspace())      # 4 images, saliency, IG, Grad-CAM, RISE
    result = evaluate(resolver, request, progress=lambda f, m: print(f"{f:4.0%} {m}"))
    result.summary()                                              # metrics per method, ranked

The samples are the workspace's data filtered by true class and by whether the model gets them
right, then ``n_samples`` of them drawn with ``seed`` (or picked by index). The methods run through
:func:`core.attribution.run_attribution`; the request's ``seed`` also seeds the stochastic methods
(RISE's masks, SmoothGrad's noise, ...) and the random map the metrics compare against, so one
number repeats a whole run.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.workspace import Resolver, check_compatible, describe_data, describe_model, fingerprint

from . import REGISTRY, capabilities, spec
from .base import AttributionError, PassEstimate, Subject, card_of
from .suite import (
    COLUMNS,
    DEFAULT_METRICS,
    METRICS,
    RANDOM_MAP,
    AttributionResult,
    MetricSettings,
    _resize_masks,
    estimate_run,
    run_attribution,
)

Progress = Callable[[float, str], None]

#: the classroom default: a few samples, cheap metric groups, methods at settings that keep the first run
#: within about 10 s on 2 cores (measured: 7.4 CPU s for 4 images on the shipped ViT, see the README)
DEFAULT_N_SAMPLES = {"image": 4, "table": 20}
#: the most samples one run explains (a request for more is refused with the bound)
MAX_SAMPLES = {"image": 64, "table": 2000}
#: the methods a run uses by default, with their settings, per kind of input (those that apply to the model)
DEFAULT_METHODS: dict[str, dict[str, dict]] = {
    "image": {"saliency": {}, "integrated-gradients": {}, "gradcam": {}, "rise": {"masks": 500}},
    "table": {"feature-ablation": {}, "permutation": {}, "kernelshap": {"samples": 500}},
}
#: methods marked slow that the default still runs, because it runs them at reduced settings: why
REDUCED_DEFAULTS = {
    "rise": "the default run uses 500 masks instead of 2,000 (a noisier map; raise it for a cleaner one)",
    "kernelshap": "the default run samples 500 coalitions per row instead of 1,000; a table model answers them in "
                  "about a second",
}
#: metric columns as table headers, with the better direction (the long forms are suite.METRIC_LABELS)
SHORT_LABELS = {"deletion_auc": "deletion AUC ↓", "insertion_auc": "insertion AUC ↑", "sparseness": "sparseness ↑",
                "complexity": "complexity ↓", "relevance_mass": "relevance mass ↑", "relevance_rank": "relevance rank ↑",
                "randomisation_similarity": "randomisation similarity ↓", "max_sensitivity": "max-sensitivity ↓"}
TARGETS = {"predicted": "the predicted class", "label": "the true class"}
CORRECTNESS = {"all": "all samples", "correct": "correctly predicted", "incorrect": "misclassified"}
#: a run estimated to take longer than this (seconds of model compute on this server) asks for confirmation
CONFIRM_SECONDS = 30.0
#: the Shapes world's regions other than the object that a run reports attribution on
REGIONS = ("marker",)


# ---------------------------------------------------------------- the request
@dataclass(frozen=True)
class AttributionRequest:
    """Everything that decides an attribution run, JSON-able.

    ``workspace``: the model and data specs (:mod:`core.workspace`). ``methods``: method id -> its
    parameters (missing ones take the spec's defaults; ``seed`` comes from the request).
    ``metrics``: metric groups of :data:`core.attribution.suite.METRICS`. ``target``: explain
    "predicted" (each sample's predicted class) or "label" (its true class). The samples:
    ``indices`` (rows of the data) when given; otherwise the rows whose true class is in
    ``classes`` (None: any) and that the model gets ``correctness`` ("all", "correct",
    "incorrect"), of which ``n_samples`` are drawn with ``seed`` (all when fewer match), in data
    order. ``seed`` also seeds the stochastic methods and the metrics' random map.
    """

    workspace: dict
    methods: dict[str, dict]
    metrics: tuple[str, ...] = DEFAULT_METRICS
    target: str = "predicted"
    n_samples: int = DEFAULT_N_SAMPLES["image"]
    classes: tuple[int, ...] | None = None
    correctness: str = "all"
    indices: tuple[int, ...] | None = None
    seed: int = 0

    def __post_init__(self):
        # JSON round trips (a kept result's provenance) give lists: equal requests stay equal
        object.__setattr__(self, "metrics", tuple(self.metrics))
        object.__setattr__(self, "methods", {str(m): dict(p or {}) for m, p in dict(self.methods).items()})
        for name in ("classes", "indices"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, tuple(int(i) for i in v))

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.as_dict())

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def compact_params(method: str, params: Mapping) -> dict:
    """``params`` without the entries equal to the spec's defaults (so equal runs have equal requests)."""
    defaults = spec(method).defaults
    return {k: v for k, v in params.items() if k not in defaults or defaults[k] != v}


def method_params(request: AttributionRequest) -> dict[str, dict]:
    """The parameters every method runs with: the request's, with ``seed`` set to the request's for the
    methods that draw at random."""
    out = {}
    for method, params in request.methods.items():
        p = dict(params or {})
        if method in REGISTRY and any(q.name == "seed" for q in spec(method).params):
            p["seed"] = int(request.seed)
        out[method] = p
    return out


# ---------------------------------------------------------------- model, data and samples
def load(resolver: Resolver, workspace: dict):
    """(model, dataset) of ``workspace``, checked for attribution: a model that reads the data's inputs."""
    dataset = resolver.load_data(workspace["data"])
    model = resolver.load_model(workspace["model"], workspace["data"])
    if model is None or dataset.kind == "outputs":
        raise AttributionError("Attribution explains a model's inputs; this workspace holds precomputed outputs "
                               "without a model. Choose a model and its image or table data on the home page.")
    check_compatible(model, dataset)
    return model, dataset


def kind_of(dataset) -> str:
    return "image" if dataset.images is not None else "table"


def usable(model) -> dict[str, str | None]:
    """Every method -> why it does not apply to ``model`` (None when it does)."""
    return REGISTRY.usable(capabilities(model))


def default_methods(model, kind: str) -> dict[str, dict]:
    """The default methods (with their default-run settings) for ``kind`` ("image" or "table") inputs that
    apply to ``model``."""
    reasons = usable(model)
    return {m: dict(p) for m, p in DEFAULT_METHODS[kind].items() if reasons.get(m) is None}


def metric_reasons(model, dataset) -> dict[str, str | None]:
    """Every metric group -> why it cannot apply to ``model`` on ``dataset`` (None when it can)."""
    from .base import is_torch

    out: dict[str, str | None] = dict.fromkeys(METRICS)
    if dataset.images is None or "object" not in (dataset.masks or {}):
        out["localisation"] = "localisation needs ground-truth object masks (the built-in Shapes world has them)"
    if not is_torch(model):
        out["randomisation"] = "randomisation re-initialises a torch model's weights; this model is not a torch model"
    return out


def candidates(resolver: Resolver, request: AttributionRequest) -> np.ndarray:
    """Rows of the request's data that pass its filter (true class in ``classes``; predicted right or
    wrong per ``correctness``), in data order. The predictions come from the workspace's cached outputs."""
    ws = request.workspace
    dataset = resolver.load_data(ws["data"])
    labels = np.asarray(dataset.labels, np.int64)
    keep = np.ones(len(labels), bool)
    if request.classes is not None:
        keep &= np.isin(labels, np.asarray(request.classes, np.int64))
    if request.correctness != "all":
        if request.correctness not in CORRECTNESS:
            raise AttributionError(f"correctness must be one of {', '.join(CORRECTNESS)}; got {request.correctness!r}.")
        preds = np.asarray(resolver.outputs(ws["model"], ws["data"]).preds, np.int64)
        right = preds == labels
        keep &= (labels >= 0) & (right if request.correctness == "correct" else ~right)
    return np.flatnonzero(keep)


def sample_indices(resolver: Resolver, request: AttributionRequest) -> np.ndarray:
    """The rows the request explains: its ``indices``, or ``n_samples`` drawn with ``seed`` from the
    :func:`candidates` (all of them when fewer match), sorted. :class:`AttributionError` when none match."""
    dataset = resolver.load_data(request.workspace["data"])
    kind = kind_of(dataset)
    if request.indices is not None:
        idx = np.asarray(request.indices, np.int64)
        if not len(idx):
            raise AttributionError("No samples were picked: choose at least one.")
        if (idx < 0).any() or (idx >= len(dataset)).any():
            raise AttributionError(f"Sample indices must lie in 0..{len(dataset) - 1} for '{dataset.name}'; "
                                   f"got {idx[(idx < 0) | (idx >= len(dataset))][:4].tolist()}.")
        if len(idx) > MAX_SAMPLES[kind]:
            raise AttributionError(f"At most {MAX_SAMPLES[kind]} samples per run; {len(idx)} were picked.")
        return idx
    n = int(request.n_samples)
    if not 1 <= n <= MAX_SAMPLES[kind]:
        raise AttributionError(f"The number of samples must lie in 1..{MAX_SAMPLES[kind]} for {kind} data; got {n}.")
    cands = candidates(resolver, request)
    if not len(cands):
        names = dataset.class_names
        which = ("" if request.classes is None else
                 " of class " + ", ".join(names[c] if 0 <= c < len(names) else str(c) for c in request.classes))
        raise AttributionError(f"No sample{which} is {CORRECTNESS[request.correctness]} in {dataset.name}; "
                               "widen the filter (another class, or all samples).")
    if len(cands) <= n:
        return cands
    rng = np.random.default_rng(int(request.seed))
    return np.sort(rng.choice(cands, size=n, replace=False))


def _check(request: AttributionRequest) -> None:
    if not request.methods:
        raise AttributionError(f"Choose at least one method; available: {', '.join(REGISTRY.available())}.")
    for method in request.methods:
        REGISTRY.spec(method)  # an unknown id names the available ones
    unknown = [g for g in request.metrics if g not in METRICS]
    if unknown:
        raise AttributionError(f"Unknown metric group(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}.")
    if request.target not in TARGETS:
        raise AttributionError(f"target must be 'predicted' or 'label'; got {request.target!r}.")


# ---------------------------------------------------------------- cost
@dataclass(frozen=True)
class RunEstimate:
    """What a request will cost before it runs: ``passes`` per method (with its metrics) and for the
    random map, the ``indices`` it will explain, and ``seconds_per_pass`` (one input through the
    model on this machine, measured by :func:`pass_seconds`; None when not measured)."""

    passes: dict[str, PassEstimate]
    indices: np.ndarray
    seconds_per_pass: float | None = None

    @property
    def total(self) -> PassEstimate:
        out = PassEstimate(0)
        for p in self.passes.values():
            out = out + p
        return out

    @property
    def equivalent(self) -> int:
        """Forward passes, a backward pass counted as two."""
        return self.total.equivalent

    @property
    def seconds(self) -> float | None:
        return None if self.seconds_per_pass is None else self.equivalent * self.seconds_per_pass

    @property
    def needs_confirmation(self) -> bool:
        return self.seconds is not None and self.seconds > CONFIRM_SECONDS


def estimate(resolver: Resolver, request: AttributionRequest, seconds_per_pass: float | None = None) -> RunEstimate:
    """Forward and backward passes of every method of ``request`` with its metrics, and of the random
    map's curves, before anything runs (:func:`core.attribution.estimate_run`); methods that do not
    apply count zero."""
    _check(request)
    model, dataset = load(resolver, request.workspace)
    idx = sample_indices(resolver, request)
    passes = estimate_run(model, dataset, idx, method_params(request), metrics=request.metrics,
                          settings=MetricSettings(seed=int(request.seed)))
    return RunEstimate(passes, idx, seconds_per_pass)


def pass_seconds(resolver: Resolver, workspace: dict, rows: int | None = None, repeats: int = 3) -> float:
    """Seconds one input takes through the workspace's model here: a batch of ``rows`` inputs (32 images,
    4,096 table rows) timed ``repeats`` times after a warm-up, the fastest kept, divided by the rows.
    What the page multiplies the estimated passes by; it measures, so it varies with the load."""
    from core.extract import preprocess

    model, dataset = load(resolver, workspace)
    k = min(len(dataset), 8)
    if dataset.images is not None:
        x = preprocess(dataset.images[:k], card_of(model))
        batch = x.repeat(math.ceil((rows or 32) / k), 1, 1, 1)[: rows or 32]
        subject = Subject.build(model, x[:1], 0)

        def work():
            subject.predict_torch(batch)
    else:
        names = list(getattr(model, "feature_names", None) or dataset.feature_names)
        table = dataset.frame[names].to_numpy(np.float64)[:k]
        batch = np.tile(table, (math.ceil((rows or 4096) / k), 1))[: rows or 4096]
        subject = Subject.build(model, table[:1], 0, background=table[:1])

        def work():
            subject.predict_np(batch)
    work()
    best = math.inf
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - t0)
    return best / len(batch)


# ---------------------------------------------------------------- the run
def evaluate(resolver: Resolver, request: AttributionRequest, progress: Progress | None = None,
             cache=None) -> AttributionResult:
    """Run every method of ``request`` on its samples of the workspace's data and score the maps.

    Returns the :class:`~core.attribution.AttributionResult` with ``request`` and ``fingerprint``
    set, and the Shapes world's corner-marker masks in ``region_masks`` when the data has them.
    ``cache`` (anything with ``get_or_compute``) keeps each method's maps and metrics, so a later run
    with one more method computes only that one. :class:`AttributionError` for a workspace without
    a model, a filter no sample passes, or when no method could run (the reasons named)."""
    report = progress or (lambda f, m: None)
    _check(request)
    report(0.0, "loading the model and the data")
    model, dataset = load(resolver, request.workspace)
    idx = sample_indices(resolver, request)
    result = run_attribution(model, dataset, idx, method_params(request), target=request.target,
                             metrics=request.metrics, settings=MetricSettings(seed=int(request.seed)),
                             progress=report, cache=cache)
    if not result.maps:
        raise AttributionError("No method could run: " + "; ".join(
            f"{spec(m).name if m in REGISTRY else m}: {msg}" for m, msg in result.errors.items()))
    regions = {}
    if result.kind == "image" and dataset.masks:
        h, w = result.maps[result.methods[0]].shape[-2:]
        for name in REGIONS:
            if name in dataset.masks:
                regions[name] = _resize_masks(np.asarray(dataset.masks[name])[idx], h, w)
    out = dataclasses.replace(result, request=request, fingerprint=request.fingerprint, region_masks=regions)
    for m in out.methods:  # the channel sums, before the result is shared read-only through a cache
        out.pixel_map(m)
    report(1.0, "done")
    return out


# ---------------------------------------------------------------- reading a result
def method_label(method: str) -> str:
    return spec(method).name if method in REGISTRY else method


def summary_table(result: AttributionResult) -> pd.DataFrame:
    """The result's :meth:`~core.attribution.AttributionResult.summary` with readable column names:
    one row per method (best mean rank first), then the random map."""
    table = result.summary()
    names = {c: SHORT_LABELS[c] for c in SHORT_LABELS if c in table}
    names.update({f"rank_{c}": f"rank: {SHORT_LABELS[c][:-2]}" for c in SHORT_LABELS if f"rank_{c}" in table})
    names.update({"mean_rank": "mean rank", "nan_samples": "samples with NaN", "seconds": "seconds",
                  "passes": "passes"})
    numeric = [c for c in table.columns if c != "method"]
    table = table.assign(method=[method_label(m) for m in table["method"]],
                         **{c: pd.to_numeric(table[c], errors="coerce") for c in numeric})
    return table.rename(columns=names)


def region_table(result: AttributionResult, region: str = "marker") -> pd.DataFrame:
    """How much attribution each method puts on a region (the Shapes world's corner marker), over the
    picked images that show it: the share of |attribution| inside the region, Σ|a|·mask / Σ|a|, and of
    the positive attribution, Σa⁺·mask / Σa⁺ (the relevance mass accuracy of Arras et al. with the
    region as the mask), next to the region's area share (what a random map scores) and their ratio.
    Empty when the data has no such region or no picked image shows it."""
    cols = ["method", "images", "share_abs", "share_positive", "area_share", "ratio"]
    mask = result.region_masks.get(region)
    if mask is None:
        return pd.DataFrame(columns=cols)
    shown = mask.reshape(len(mask), -1).any(1)
    if not shown.any():
        return pd.DataFrame(columns=cols)
    m = mask[shown].reshape(int(shown.sum()), -1)
    area = float(m.mean())
    rows = []
    for method in result.methods:
        ok = shown & ~result.nan_samples[method]
        if not ok.any():
            continue
        a = result.pixel_map(method)[ok].reshape(int(ok.sum()), -1).astype(np.float64)
        mk = mask[ok].reshape(int(ok.sum()), -1)
        mag = np.abs(a)
        pos = np.clip(a, 0, None)
        with np.errstate(invalid="ignore", divide="ignore"):
            share_abs = np.nanmean((mag * mk).sum(1) / mag.sum(1))
            share_pos = np.nanmean((pos * mk).sum(1) / pos.sum(1))
        rows.append({"method": method, "images": int(ok.sum()), "share_abs": float(share_abs),
                     "share_positive": float(share_pos), "area_share": area,
                     "ratio": float(share_abs / area) if area > 0 else np.nan})
    return pd.DataFrame(rows, columns=cols)


def metrics_frame(result: AttributionResult) -> pd.DataFrame:
    """Every metric per (method, sample), the random map's rows last (for the CSV export)."""
    frames = [result.metrics]
    if not result.baseline.empty:
        frames.append(result.baseline)
    frame = pd.concat(frames, ignore_index=True) if any(len(f) for f in frames) else result.metrics
    cols = ["method", "sample"] + [c for c in frame.columns if c not in ("method", "sample")]
    return frame[cols]


def attributions_frame(result: AttributionResult) -> pd.DataFrame:
    """Every attribution value in long form: method, sample, target, then (row, col) of the pixel (the
    channels summed) or the feature, and the value."""
    frames = []
    for m in result.methods:
        values = result.pixel_map(m)
        n = len(values)
        if result.kind == "image":
            h, w = values.shape[-2:]
            rr, cc = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
            frames.append(pd.DataFrame({
                "method": m, "sample": np.repeat(result.indices, h * w), "target": np.repeat(result.targets, h * w),
                "row": np.tile(rr.ravel(), n), "col": np.tile(cc.ravel(), n), "value": values.reshape(-1)}))
        else:
            f = values.shape[1]
            names = list(result.feature_names or [f"x{j}" for j in range(f)])
            frames.append(pd.DataFrame({
                "method": m, "sample": np.repeat(result.indices, f), "target": np.repeat(result.targets, f),
                "feature": np.tile(names, n), "value": values.reshape(-1)}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def attributions_npz(result: AttributionResult) -> bytes:
    """The maps as an ``.npz`` (no pickle): ``<method>`` shaped like the model input (images [n, C, H, W]
    with their channels, tables [n, F]), ``samples``, ``targets``, ``preds``, ``labels`` and, for
    tables, ``feature_names``."""
    import io

    arrays = {m: result.maps[m] for m in result.methods}
    arrays.update(samples=result.indices, targets=result.targets, preds=result.preds)
    if result.labels is not None:
        arrays["labels"] = np.asarray(result.labels)
    if result.feature_names:
        arrays["feature_names"] = np.asarray(result.feature_names, dtype=str)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def describe(result: AttributionResult) -> str:
    req = result.request
    what = "images" if result.kind == "image" else "rows"
    target = TARGETS.get(getattr(req, "target", "predicted"), "the predicted class")
    names = ", ".join(method_label(m) for m in result.methods)
    return f"{names} on {len(result.indices)} {what} of {result.data_name}, explaining {target}"


def report_section(result: AttributionResult, workspace: dict):
    """The attribution part of an HTML report (core.report.Section): the metrics per method next to the
    random map, the maps (image overlays, or global feature importance for tables) and the
    deletion/insertion curves."""
    import core.viz.attribution as vz
    from core.report import Section

    figures = []
    if result.kind == "image":
        figures.append(vz.heatmap_grid({method_label(m): result.pixel_map(m) for m in result.methods},
                                       images=result.images, normalise="per-method", outlines=result.masks,
                                       nan_samples={method_label(m): result.nan_samples[m] for m in result.methods},
                                       sample_titles=sample_titles(result), title="Attribution maps (per-method scale)"))
    elif result.feature_names:
        figures.append(vz.global_importance({method_label(m): result.maps[m] for m in result.methods},
                                            result.feature_names, top_k=20,
                                            title="Global importance: mean |attribution| over the samples"))
    for kind in ("deletion", "insertion"):
        curves = {method_label(m): c[kind] for m, c in result.curves.items() if kind in c}
        if curves:
            figures.append(vz.perturbation_curves(curves, title=f"{kind.capitalize()} curves"))
    ranking = [method_label(m) for m in result.ranking()]
    marker = region_table(result)
    text = (f"Attribution by {describe(result)} ({describe_model(workspace['model'])} on "
            f"{describe_data(workspace['data'])}). Ranking by mean rank over the metrics: {', '.join(ranking)}."
            + ("" if marker.empty else " Share of |attribution| on the corner marker: " + ", ".join(
                f"{method_label(r.method)} {r.share_abs:.1%}" for r in marker.itertuples())
               + f" (its area share {marker['area_share'].iloc[0]:.1%}).")
            + ("" if not result.errors else " Not run: " + "; ".join(
                f"{method_label(m)}: {e}" for m, e in result.errors.items()))
            + "".join(f" {method_label(m)} gave NaN on {c} sample(s)." for m, c in result.nan_count.items() if c))
    tables = [("One row per method (best mean rank first), then a random map: the bar every method should clear.",
               summary_table(result).drop(columns=["seconds"]))]
    return Section("Attribution", text, tables=tables, figures=figures)


def sample_titles(result: AttributionResult) -> list[str]:
    """One short title per sample: its row and the class explained, ✓ when the model predicts the true
    class, ✗ and the prediction when it does not."""
    names = result.class_names

    def cls(c: int) -> str:
        return names[c] if 0 <= c < len(names) else str(c)

    out = []
    for k, i in enumerate(result.indices):
        label = None if result.labels is None else int(result.labels[k])
        pred = int(result.preds[k])
        mark = ("" if label is None or label < 0 else " ✓" if pred == label else f" ✗ pred {cls(pred)}")
        out.append(f"#{int(i)} {cls(int(result.targets[k]))}{mark}")
    return out


def default_request(resolver: Resolver, ws: dict) -> AttributionRequest:
    """The run a page or the audit starts with: the default methods that apply to the workspace's model
    (:data:`DEFAULT_METHODS`) on :data:`DEFAULT_N_SAMPLES` samples drawn with seed 0, the cheap metric
    groups that apply (localisation needs the Shapes masks), explaining the predicted class.
    :class:`AttributionError` for a workspace without a model."""
    model, dataset = load(resolver, ws)
    kind = kind_of(dataset)
    reasons = metric_reasons(model, dataset)
    return AttributionRequest({"model": ws["model"], "data": ws["data"]}, default_methods(model, kind),
                              metrics=tuple(g for g in DEFAULT_METRICS if reasons[g] is None),
                              n_samples=DEFAULT_N_SAMPLES[kind])


__all__ = ["CONFIRM_SECONDS", "CORRECTNESS", "COLUMNS", "DEFAULT_METHODS", "DEFAULT_N_SAMPLES", "MAX_SAMPLES",
           "REDUCED_DEFAULTS", "RANDOM_MAP", "SHORT_LABELS", "TARGETS", "AttributionRequest", "RunEstimate", "attributions_frame",
           "attributions_npz", "candidates", "compact_params", "default_methods", "default_request", "describe",
           "estimate", "evaluate", "kind_of", "load", "method_params", "metric_reasons", "metrics_frame", "pass_seconds",
           "region_table", "report_section", "sample_indices", "sample_titles", "summary_table", "usable"]
