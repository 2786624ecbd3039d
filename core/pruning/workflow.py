"""The token-pruning analysis of a workspace, end to end and without any UI: which model and images
to use, which budgets a model can reach, and the sweep itself behind a progress callback.

The pruning page, the audit CLI and a notebook call the same function::

    from core.workspace import Resolver, default_workspace
    from core.pruning.workflow import PruningRequest, evaluate

    request = PruningRequest(default_workspace(), {"zero-tprune": {}, "tome": {}, "evit": {}, "random": {}},
                             budgets=(0.2, 0.35), n_images=300)
    result = evaluate(Resolver(), request, progress=lambda f, m: print(f"{f:4.0%} {m}"))
    result.table()

A request either sweeps *MACs budgets* (``budgets=(0.2, 0.35)``: −20% and −35% of the unpruned
model's MACs; each method's keep rate or ToMe's r is matched to the budget, see
:func:`core.pruning.match_budget`) or runs every method once with its own knobs
(``budgets=None``: ``keep_rate`` and ``layers``, or a per-block ``schedule``; ToMe's ``r``,
``r_schedule`` or ``r_list``).

The images are the first ``n_images`` of the workspace's data. The model is the workspace's model,
which must be a ViT the pruners support (:data:`core.pruning.SUPPORTED`); :data:`SHIPPED_VIT` is the
one the project ships. The run patches a private copy of the model: the shared model that other
analyses (and other sessions) read is never patched.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.importance import Importance, make_provenance
from core.workspace import Resolver, data_kind_of, describe_data, describe_model, fingerprint

from .base import REGISTRY, SUPPORTED, PruningError, capabilities, inspect_model, unsupported_reason
from .flops import fixed_macs
from .schedule import unpruned_plan
from .sweep import UNPRUNED, SweepResult, match_budget, run_sweep

Progress = Callable[[float, str], None]

#: the model the project ships for token pruning (a timm ViT with a conv stem, 8×8 patches + CLS)
SHIPPED_VIT = {"kind": "zoo", "name": "shapes-vit"}
#: the methods a run uses by default: the three zero-shot methods of the issue and the random floor
DEFAULT_METHODS = ("zero-tprune", "tome", "evit", "random")
#: the MACs reductions a run sweeps by default (−35% is the papers' DeiT-S budget)
DEFAULT_BUDGETS = (0.2, 0.35)
DEFAULT_N_IMAGES = 300
#: the parameters that set a method's budget (set by a request's budgets or the page's budget section,
#: not by the per-method parameter controls)
BUDGET_PARAMS = ("keep_rate", "layers", "schedule", "r", "r_schedule", "r_list")
#: a budget further than this beyond what a method reaches is refused (the sweep notes smaller gaps)
BUDGET_TOLERANCE = 0.02


# ---------------------------------------------------------------- the request
@dataclass(frozen=True)
class PruningRequest:
    """Everything that decides a pruning run, JSON-able.

    ``workspace``: the model and data specs (:mod:`core.workspace`); the model must be a supported
    ViT, the data images. ``methods``: method id -> its parameters (missing ones take the spec's
    defaults). ``budgets``: MACs reductions to sweep (0.35 = −35%), or None to run each method
    once with its own keep rate / r / schedule. ``n_images``: the first n images of the data.
    ``seed``: the seed of the random baseline's draws (the run's only random choice; it replaces
    the random method's own ``seed`` parameter). ``batch_size``: images per forward pass for the
    accuracy; ``throughput_batch`` images per timed pass and ``throughput_rounds`` interleaved
    timing rounds (median reported).
    """

    workspace: dict
    methods: dict[str, dict]
    budgets: tuple[float, ...] | None = DEFAULT_BUDGETS
    n_images: int = DEFAULT_N_IMAGES
    seed: int = 0
    batch_size: int = 100
    throughput_batch: int = 32
    throughput_rounds: int = 3

    @property
    def fingerprint(self) -> str:
        return fingerprint({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def compact_params(method: str, params: Mapping) -> dict:
    """``params`` without the entries equal to the spec's defaults (so equal runs have equal requests)."""
    defaults = REGISTRY.spec(method).defaults
    out = {}
    for k, v in params.items():
        d = defaults.get(k, object())
        same = (tuple(v) == tuple(d)) if isinstance(v, (list, tuple)) and isinstance(d, (list, tuple)) else v == d
        if not same:
            out[k] = list(v) if isinstance(v, tuple) else v
    return out


def method_params(request: PruningRequest) -> dict[str, dict]:
    """The parameters every method runs with: the request's, with the random baseline seeded by ``request.seed``."""
    out = {}
    for method, params in request.methods.items():
        p = dict(params or {})
        if method == "random":
            p["seed"] = int(request.seed)
        out[method] = p
    return out


# ---------------------------------------------------------------- model and images
def model_reason(model) -> str | None:
    """Why ``model`` (anything a workspace resolves to) cannot be pruned, naming what is supported; None when it can."""
    if model is None:
        return f"This workspace has precomputed outputs and no model; token pruning works on {SUPPORTED}."
    reason = unsupported_reason(model)
    return None if reason is None else reason[0].upper() + reason[1:]


def check_model(model) -> None:
    reason = model_reason(model)
    if reason:
        raise PruningError(reason)


def data_spec_for(workspace: dict) -> dict:
    """The images a pruning run of ``workspace`` uses: the workspace's data when it holds images, else the
    default Shapes test images."""
    from core.workspace import DEFAULT_WORKSPACE

    data = workspace["data"]
    return data if data_kind_of(data) == "image" else copy.deepcopy(DEFAULT_WORKSPACE["data"])


def images_of(resolver: Resolver, request: PruningRequest):
    """The first ``request.n_images`` images of the request's data (a :class:`core.data.Dataset`)."""
    dataset = resolver.load_data(request.workspace["data"])
    if getattr(dataset, "images", None) is None:
        raise PruningError(f"Token pruning needs images; '{dataset.name}' is a {dataset.kind} dataset. Choose an image "
                           "dataset (e.g. the built-in Shapes world) on the home page.")
    if int(request.n_images) < 1:
        raise PruningError(f"The number of images must be at least 1, got {request.n_images}.")
    n = min(int(request.n_images), len(dataset))
    return dataset if n == len(dataset) else dataset.subset(np.arange(n))


# ---------------------------------------------------------------- budgets
def _macs(model, method: str, params: Mapping) -> float:
    info = inspect_model(model)
    pruner = REGISTRY.spec(method).impl(info, **dict(params))
    return float(pruner.plan.macs(info, fixed_macs(model)))


def reduction(model, method: str, params: Mapping | None = None) -> float:
    """The MACs reduction of ``method`` run with ``params`` as given (its keep rate and pruning blocks, a
    per-block schedule, ToMe's r) on ``model``: 1 − MACs / unpruned MACs. :class:`PruningError` for a
    parameter out of range, with the valid range."""
    info = inspect_model(model)
    full = unpruned_plan(info).macs(info, fixed_macs(model))
    return 1.0 - _macs(model, method, dict(params or {})) / full


def max_reduction(model, method: str, params: Mapping | None = None) -> float:
    """The largest MACs reduction ``method`` reaches on ``model`` with ``params`` (its pruning blocks, ToMe's
    schedule): keep rate 0.01 at its pruning blocks, or ToMe's largest r. In [0, 1)."""
    info = inspect_model(model)
    full = unpruned_plan(info).macs(info, fixed_macs(model))
    params = {k: v for k, v in dict(params or {}).items() if k not in ("keep_rate", "r", "schedule")}
    deepest = match_budget(model, method, 0.999, **params)
    return max(0.0, 1.0 - _macs(model, method, deepest) / full)


def budget_limits(model, methods: Mapping[str, Mapping]) -> dict[str, float]:
    """Method id -> the largest MACs reduction it reaches on ``model`` (methods that cannot run are left out)."""
    caps = capabilities(model)
    out = {}
    for method, params in methods.items():
        if REGISTRY.unavailable_reason(method, caps):
            continue
        try:
            out[method] = max_reduction(model, method, params)
        except PruningError:  # a bad parameter: the sweep reports it for this method
            continue
    return out


def check_budgets(model, methods: Mapping[str, Mapping], budgets) -> tuple[float, ...]:
    """The budgets as floats; :class:`PruningError` with the valid range when one is not a MACs reduction in
    [0, 1) or lies beyond what a chosen method reaches on this model."""
    out = []
    for b in budgets:
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or not 0.0 <= b < 1.0:
            raise PruningError(f"A budget is a MACs reduction in [0, 1) (0.35 = −35%), got {b!r}.")
        out.append(float(b))
    if not out:
        raise PruningError("Choose at least one budget (a MACs reduction such as 0.35 for −35%), or run the methods "
                           "with their own keep rates (budgets=None).")
    limits = budget_limits(model, methods)
    if limits:
        reach = min(limits.values())
        far = [b for b in out if b > reach + BUDGET_TOLERANCE]
        if far:
            names = ", ".join(f"{REGISTRY.spec(m).name} −{v:.0%}" for m, v in limits.items())
            raise PruningError(
                f"A MACs reduction of −{max(far):.0%} is out of reach on this model: the most each chosen method can "
                f"remove is {names} (keep rate 0.01 at its pruning blocks, or ToMe's largest r). Choose budgets "
                f"between 0% and −{math.floor(100 * reach)}%, or prune at more blocks.")
    return tuple(out)


# ---------------------------------------------------------------- the run
def evaluate(resolver: Resolver, request: PruningRequest, progress: Progress | None = None, cache=None) -> SweepResult:
    """Run every method of ``request`` at every budget on the workspace's model and images.

    Returns the :class:`~core.pruning.SweepResult` with ``request`` and ``fingerprint`` set.
    ``cache`` (anything with ``get_or_compute``) keeps each configuration's evaluation, so a later
    run with one more method evaluates only that one (the throughput is always timed for the whole
    set together, interleaved). :class:`PruningError` for a model that is not a supported ViT, data
    without images, an unreachable budget, or when no method could run."""
    report = progress or (lambda f, m: None)
    ws = request.workspace
    if not request.methods:
        raise PruningError(f"Choose at least one method; available: {', '.join(REGISTRY.available())}.")
    for method in request.methods:
        REGISTRY.spec(method)  # an unknown id names the available ones
    report(0.0, "loading the model and the images")
    model = resolver.load_model(ws["model"], ws["data"])
    check_model(model)
    dataset = images_of(resolver, request)
    methods = method_params(request)
    budgets = None if request.budgets is None else check_budgets(model, methods, request.budgets)
    private = copy.deepcopy(model)  # patched in place by the pruners: the shared model stays untouched
    result = run_sweep(private, dataset, methods, budgets, batch_size=int(request.batch_size),
                       throughput_batch=int(request.throughput_batch), throughput_rounds=int(request.throughput_rounds),
                       progress=report, cache=cache, model_name=describe_model(ws["model"]))
    if not result.points:
        raise PruningError("No method could run: " + "; ".join(
            f"{REGISTRY.spec(m).name}: {msg.removeprefix(REGISTRY.spec(m).name + ': ')}" for m, msg in result.errors.items()))
    return dataclasses.replace(result, request=request, fingerprint=request.fingerprint)


# ---------------------------------------------------------------- reading a result
REGION_NAMES = {"object": "the object", "marker": "the corner marker", "background": "the background"}
#: a region counts as kept (or dropped) when its retention differs from random keeping's by more than this factor
#: and by more than SIGNIFICANCE standard errors of random keeping on the same images
FACTOR = 1.1
SIGNIFICANCE = 3.0


def region_summary(result: SweepResult) -> pd.DataFrame:
    """Per configuration, after its last pruning block: the share of each region's patches (object, marker,
    background) that the tokens still hold, random keeping's share at the same budget, and which regions the
    method keeps or drops.

    With ``share[i,p]`` a patch's share of the region and ``w[i,p]`` its retention weight (1 alone in
    its token, 1/s merged into s patches, 0 dropped), retention = Σ share·w / Σ share. Random keeping
    of the same number of tokens retains each patch of image i with probability qᵢ = (tokens left)/N0,
    so its expected retention is Σ share·qᵢ / Σ share (``random``) with a standard error of about
    √(Σ share²·qᵢ(1−qᵢ)) / Σ share (``z`` = the difference in these units). A region is **kept** when
    its retention exceeds random's by more than ×1.1 and 3 standard errors (``kept``: those regions,
    highest factor first), **dropped** when it falls below random's by as much. Empty without
    ground-truth masks (only the Shapes world has them)."""
    from .patch import retention_weights

    cols = ["method", "label", "budget", "block", "region", "retention", "random", "factor", "z"]
    rows = []
    if not result.regions:
        return pd.DataFrame(columns=cols)
    n0 = result.info.n_patches
    for p in result.points:
        if not p.layers:
            continue
        last = p.layers[-1]
        w = retention_weights(last.origin).astype(np.float64)
        q = w.sum(1, keepdims=True) / n0  # random keeping's per-image retention probability
        for region, share in result.regions.items():
            share = share.astype(np.float64)
            total = share.sum()
            if total <= 0:
                continue
            ret = float((share * w).sum() / total)
            rnd = float((share * q).sum() / total)
            se = float(np.sqrt((share ** 2 * q * (1 - q)).sum()) / total)
            rows.append({"method": p.method, "label": p.label, "budget": p.budget, "block": last.block,
                         "region": region, "retention": ret, "random": rnd,
                         "factor": ret / rnd if rnd > 0 else np.nan, "z": (ret - rnd) / se if se > 0 else np.nan})
    return pd.DataFrame(rows, columns=cols)


def _significant(row, sign: int) -> bool:
    f, z = row["factor"], row["z"]
    if not (np.isfinite(f) and np.isfinite(z)):
        return False
    return (f > FACTOR and z > SIGNIFICANCE) if sign > 0 else (f < 1 / FACTOR and z < -SIGNIFICANCE)


def verdicts(result: SweepResult) -> dict[str, str]:
    """Configuration label -> one sentence on which regions it keeps or drops, against random keeping
    at the same budget (:func:`region_summary`); empty without ground-truth masks."""
    summary = region_summary(result)
    out = {}
    for label, rows in summary.groupby("label", sort=False):
        rows = rows.sort_values("factor", ascending=False)
        block = int(rows["block"].iloc[0])
        kept = [r for _, r in rows.iterrows() if _significant(r, +1)]
        dropped = [r for _, r in rows.iloc[::-1].iterrows() if _significant(r, -1)]

        def part(r):
            return f"{REGION_NAMES.get(r['region'], r['region'])} ({r['retention']:.0%} vs {r['random']:.0%}, ×{r['factor']:.1f})"

        if not kept and not dropped:
            obj = rows[rows["region"] == "object"]
            detail = (f" (object {obj['retention'].iloc[0]:.0%} vs {obj['random'].iloc[0]:.0%})" if len(obj) else "")
            out[label] = (f"{label} keeps object, marker and background alike after block {block}, as random keeping "
                          f"does{detail}.")
            continue
        text = f"After block {block}, {label}"
        if kept:
            text += " keeps " + " and ".join(part(r) for r in kept) + " above random's share"
        if dropped:
            text += (" and" if kept else "") + " drops " + " and ".join(part(r) for r in dropped)
        out[label] = text + "."
    return out


def to_importances(result: SweepResult, method: str | None = None, budget: float | None = None,
                   workspace: dict | None = None) -> dict[str, Importance]:
    """The token scores of every pruning block of the chosen configurations as importance distributions
    (unit "token", values [N, N0] float32 over the original patches, NaN where a patch was already gone;
    scale "mass" for importances, "score" for ToMe's similarities and random draws), labelled
    "Pruning · <configuration> · block <b>", with the request of that one configuration in the provenance."""
    req = result.request
    ws = workspace or (req.workspace if req is not None else {})
    rows, cols = result.info.grid
    names = [f"patch r{r} c{c}" for r in range(rows) for c in range(cols)]
    out = {}
    for p in result.points:
        if method is not None and p.method != method:
            continue
        if budget is not None and (p.budget is None or abs(p.budget - budget) > 1e-9):
            continue
        request = None
        if req is not None:  # the run of this one configuration, to reproduce the values
            request = req.as_dict()
            request["methods"] = {p.method: dict(req.methods.get(p.method) or {})}
            request["budgets"] = None if p.budget is None else (p.budget,)
        for lt in p.layers:
            prov = make_provenance("pruning", p.method, p.params, model=ws.get("model"), data=ws.get("data"),
                                   seed=req.seed if req is not None else None, block=lt.block, budget=p.budget,
                                   score=p.score_name, configuration=p.label, n_images=result.n_images,
                                   workspace=ws, request=request)
            out[f"Pruning · {p.label} · block {lt.block}"] = Importance(values=lt.scores, unit="token", names=names,
                                                                       scale=p.score_scale, provenance=prov)
    return out


def report_section(result: SweepResult, workspace: dict):
    """The token-pruning part of an HTML report (core.report.Section): the sweep table, accuracy against
    GMACs and against measured images/s, and object-token retention per block next to random's."""
    import core.viz.pruning as vz
    from core.report import Section

    table = result.table()
    figures = [vz.accuracy_vs_cost(table, "gmacs", title="Accuracy vs GMACs per image"),
               vz.accuracy_vs_cost(table, "images_per_s", title="Accuracy vs measured images/s")]
    regions = region_summary(result)
    said = verdicts(result)
    if not regions.empty:
        figures.append(vz.retention_by_layer(result.retention_table(), "object",
                                             title="Object patches retained after each pruning block"))
    budgets = ("budgets " + ", ".join(f"−{b:.0%}" for b in result.budgets if b is not None) + " of the MACs"
               if any(b is not None for b in result.budgets) else "each method's own keep rate / r")
    names = ", ".join(dict.fromkeys(p.name for p in result.points))
    text = (f"Token pruning and merging ({names}) of {describe_model(workspace['model'])} on the first "
            f"{result.n_images} images of {describe_data(workspace['data'])}, at {budgets}. Unpruned: "
            + (f"accuracy {result.baseline.accuracy:.1%}, " if result.baseline.accuracy is not None else "")
            + f"{result.baseline.gmacs:.4g} GMACs, {result.baseline.images_per_s:.0f} images/s measured on this "
            "machine. " + " ".join(said.values())
            + ("" if not result.errors else " Not run: " + "; ".join(f"{m}: {e}" for m, e in result.errors.items())))
    tables = [("One row per configuration (the unpruned model first).", table.drop(columns=["note"]))]
    if not regions.empty:
        tables.append(("Share of each region's patches (Shapes masks) the tokens hold after each configuration's last "
                       "pruning block, next to random keeping at the same budget (factor = retention / random; z = the "
                       "difference in standard errors of random keeping).", regions))
    return Section("Token pruning", text, tables=tables, figures=figures)


def default_request(resolver: Resolver, ws: dict, n_images: int = DEFAULT_N_IMAGES) -> PruningRequest:
    """The run a page or the audit starts with: the default methods that apply to the workspace's model at
    the default budgets on the first ``n_images`` images. :class:`PruningError` when the model is not a
    supported ViT."""
    model = resolver.load_model(ws["model"], ws["data"])
    check_model(model)
    caps = capabilities(model)
    usable = [m for m in DEFAULT_METHODS if REGISTRY.unavailable_reason(m, caps) is None]
    return PruningRequest({"model": ws["model"], "data": data_spec_for(ws)}, {m: {} for m in usable},
                          budgets=DEFAULT_BUDGETS, n_images=n_images)


def unsupported_workspace(resolver: Resolver, ws: dict) -> str | None:
    """Why the workspace's model cannot be pruned (one sentence naming what is supported); None when it can."""
    return model_reason(resolver.load_model(ws["model"], ws["data"]))



def points_at(result, budget) -> list:
    """The sweep's points at ``budget`` (None: the runs with each method's own keep rate / r)."""
    return [p for p in result.points if (p.budget is None and budget is None) or
            (p.budget is not None and budget is not None and abs(p.budget - budget) < 1e-9)]


def wrong_counts(result, points) -> np.ndarray:
    """Per image, how many of ``points`` predict a class other than its label (unlabelled images: 0)."""
    wrong = np.zeros(result.n_images, int)
    if result.labels is not None:
        for p in points:
            wrong += (p.preds != result.labels) & (result.labels >= 0)
    return wrong


def token_fates(point, image: int) -> pd.DataFrame:
    """What each pruning block did to the original patches of one image: patches per action (kept, dropped,
    dropped as similar, merged, fused) among those still held when it decided, and the tokens left; the
    actions no block took are left out."""
    from . import ACTIONS

    rows = []
    for lt in point.layers:
        acts = lt.actions[image]
        row = {"block": lt.block, "tokens in": lt.n_in, "tokens out": lt.n_out}
        for code, name in ACTIONS.items():
            if code >= 0:
                row[name] = int((acts == code).sum())
        rows.append(row)
    df = pd.DataFrame(rows)
    fixed = ("block", "tokens in", "tokens out")
    keep = [c for c in df.columns if c in fixed or df[c].any()]
    return df[keep].rename(columns={c: f"patches {c}" for c in df.columns if c not in fixed})


def heads_left_out(point) -> list[str]:
    """Zero-TPrune's heads that the variance filter leaves out in most images ("block b head h")."""
    return [f"block {lt.block} head {h}" for lt in point.layers if lt.head_kept is not None
            for h, share in enumerate(np.asarray(lt.head_kept).mean(0)) if share < 0.5]

__all__ = ["BUDGET_PARAMS", "REGION_NAMES", "DEFAULT_BUDGETS", "DEFAULT_METHODS", "DEFAULT_N_IMAGES", "SHIPPED_VIT", "UNPRUNED",
           "PruningRequest", "budget_limits", "check_budgets", "check_model", "compact_params", "data_spec_for",
           "default_request", "evaluate", "heads_left_out", "images_of", "points_at", "token_fates", "wrong_counts",
           "max_reduction", "method_params",
           "model_reason", "reduction", "region_summary", "report_section", "to_importances", "unsupported_workspace", "verdicts"]
