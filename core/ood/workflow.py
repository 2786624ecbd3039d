"""The OOD analysis of a workspace, end to end and without any UI: which sets to offer, which data
to fit on, calibrate on and evaluate, and the run itself behind a progress callback.

The OOD page, the audit CLI and a notebook call the same function::

    from core.workspace import Resolver, default_workspace
    from core.ood.workflow import OODRequest, evaluate, DEFAULT_SETS

    request = OODRequest(default_workspace(), DEFAULT_SETS, {"msp": {}, "knn": {"k": 50}}, n_fit=1000)
    result = evaluate(Resolver(), request, progress=lambda f, m: print(f"{f:4.0%} {m}"))
    result.summary()

The detectors always fit on the model's own training data (the train split of built-in data, or
half of an uploaded workspace); the ID evaluation set is the workspace's data or an upload.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import core.data as data
from core.data import table_ood
from core.errors import UserError
from core.extract import preprocess
from core.importance import Importance, make_provenance
from core.outputs import ModelOutputs
from core.workspace import Resolver, fingerprint, is_table_file, key_of

from .base import REGISTRY, OODError
from .suite import EvalSet, SuiteResult, run_suite

Progress = Callable[[float, str], None]

DEFAULT_TABLE_SETS = ("near: table dependency", "near: table local", "far: table global")
DEFAULT_SETS = ("near: shapes-near-ood", "far: noise", "far: textures", "far: digits", "shift: background", "shift: size")
#: fit (and validation) samples of a generated world by default: a live demo's first run stays within about
#: 10 s on 2 cores (the model runs over about 5,500 images), and the feature detectors' statistics are stable
DEFAULT_N_FIT = 1000
#: built-in sets drawn from a generative world: any split name is a fresh, independent stream of samples
GENERATED_WORLDS = ("shapes", "shapes-near-ood")


# ---------------------------------------------------------------- the sets
def candidate_sets(resolver: Resolver, ws: dict) -> dict[str, dict]:
    """OOD sets offered for the workspace's data: name -> {"group", "spec"} (and "help" for tables).

    Built-in image sets other than the ID one; the Shapes shift presets count as covariate
    shift when the ID data is the Shapes world.
    """
    ds = ws["data"]
    out: dict[str, dict] = {}
    loaded = resolver.load_data(ds)
    if loaded.kind == "table":
        return table_candidate_sets(ws, len(loaded))
    if loaded.kind != "image":
        return out
    n = ds.get("n") or 500
    seed = ds.get("seed", 0)
    id_name = ds.get("name") if ds["kind"] == "builtin" else None
    for name in data.available():
        if data.kind_of(name) != "image" or name == id_name:
            continue
        group = "near" if name == "shapes-near-ood" else "far"
        out[f"{group}: {name}"] = {"group": group, "spec": {"kind": "builtin", "name": name, "split": "test",
                                                            "n": None if name == "digits" else n, "seed": seed,
                                                            "shift": None}}
    if id_name == "shapes":
        for preset in data.shift_presets():
            out[f"shift: {preset}"] = {"group": "shift", "spec": {**ds, "shift": preset}}
    return out


def table_candidate_sets(ws: dict, n: int) -> dict[str, dict]:
    """Synthetic OOD rows for a table workspace (ADBench's dependency, local and global families), built from
    the training split of a built-in table (so no evaluation row enters them) or from an uploaded table."""
    ds = ws["data"]
    base = {**ds, "split": "train", "n": None, "shift": None} if ds["kind"] == "builtin" else ds
    out = {}
    for kind in table_ood.KINDS:
        group = table_ood.GROUP[kind]
        out[f"{group}: table {kind}"] = {"group": group, "spec": {"kind": "table-ood", "base": base, "ood": kind,
                                                                   "n": n, "seed": ds.get("seed", 0)},
                                         "help": table_ood.DESCRIPTION[kind]}
    return out


def default_sets(candidates: dict[str, dict], is_table: bool) -> list[str]:
    """The sets a run uses by default: the standard near/far/shift ones that the workspace offers."""
    wanted = DEFAULT_TABLE_SETS if is_table else DEFAULT_SETS
    return [s for s in wanted if s in candidates] or list(candidates)[:4]


def fit_and_eval_specs(ws: dict, n_fit: int) -> tuple[dict | None, dict]:
    """(fit spec or None, eval spec). Built-in data fits on its train split; uploads split themselves."""
    ds = ws["data"]
    if ds["kind"] == "builtin":
        n = None if ds["name"] == "digits" or data.kind_of(ds["name"]) == "table" else n_fit
        return {**ds, "split": "train", "n": n, "shift": None}, ds
    return None, ds


def validation_spec(ws: dict, n_fit: int) -> dict | None:
    """Held-out ID data for calibrating detectors (TempScale's T, KLM's templates): the Shapes world's "val" split,
    which neither the shipped models' training nor the test split ever draws. None where no such split exists
    (tables and digits have a fixed train/test partition; uploads are split in halves, and the fit half is
    already held out from evaluation)."""
    ds = ws["data"]
    if ds["kind"] == "builtin" and ds["name"] in GENERATED_WORLDS:
        return {**ds, "split": "val", "n": n_fit, "shift": None}
    return None


def id_upload_spec(resolver: Resolver, filename: str, content: bytes, workspace_data: data.Dataset) -> dict:
    """The data spec of an uploaded ID evaluation set. A table keeps the workspace's label column when it has
    one (for the per-class breakdown) and is read unlabelled otherwise."""
    options = {}
    if is_table_file(filename):
        from core.data.uploads import read_table_columns

        columns = read_table_columns(content, filename)[0]
        label = getattr(workspace_data, "label", None)
        # an evaluation set may hold a single class (deployment data of one kind)
        options = {"label": label, "min_classes": 1} if label and label in columns else {"unlabelled": True}
    return resolver.data_upload_spec(filename, content, **options)


def ood_upload_set(resolver: Resolver, filename: str, content: bytes) -> tuple[str, dict]:
    """(name, set entry) of an uploaded OOD set: an image .zip, an outputs .npz, or an unlabelled table."""
    options = {"unlabelled": True} if is_table_file(filename) else {}
    return f"upload: {filename}", {"group": "upload", "spec": resolver.data_upload_spec(filename, content, **options),
                                   "images": filename.lower().endswith(".zip")}


def split_outputs(out: ModelOutputs, seed: int) -> tuple[ModelOutputs, ModelOutputs, np.ndarray]:
    """Half of an uploaded set for fitting, the other half for evaluation (seeded)."""
    if len(out) < 4:
        raise OODError(f"The ID set has {len(out)} samples; at least 4 are needed to fit and evaluate detectors.")
    perm = np.random.default_rng(seed).permutation(len(out))
    half = len(out) // 2
    return out.subset(perm[:half]), out.subset(perm[half:]), perm[half:]


def input_batches(resolver: Resolver, spec: dict, card: dict, index: np.ndarray | None = None, batch: int = 128):
    """A callable yielding preprocessed image batches of a data spec (for ODIN)."""
    def gen():
        dataset = resolver.load_data(spec)
        images = dataset.images if index is None else dataset.images[index]
        for i in range(0, len(images), batch):
            yield preprocess(images[i:i + batch], card)
    return gen


def class_mismatch(out: ModelOutputs, reference: ModelOutputs) -> str | None:
    """Why ``out`` cannot be outputs of the model that produced ``reference``: another number of
    logits (None when they agree). Features of another width only stop the feature detectors,
    which say so themselves; the logit detectors still score such a set."""
    if out.num_classes == reference.num_classes:
        return None
    return (f"it has {out.num_classes} logits per sample where the model has {reference.num_classes}; "
            "were these outputs produced by a different model?")


# ---------------------------------------------------------------- the run
@dataclass(frozen=True)
class OODRequest:
    """Everything that decides an OOD run, JSON-able.

    ``set_names``: OOD sets among :func:`candidate_sets` and ``uploads`` (name -> entry from
    :func:`ood_upload_set`). ``detectors``: id -> parameters. ``n_fit``: fit samples of a generated
    world (tables fit on their whole training split). ``id_spec``: an ID evaluation set other than
    the workspace's data. ``convention`` is not part of :attr:`fingerprint`: metrics under the other
    convention come from the same scores (``SuiteResult.with_convention``)."""

    workspace: dict
    set_names: tuple[str, ...]
    detectors: dict[str, dict]
    n_fit: int = DEFAULT_N_FIT
    convention: str = "ood-positive"
    uploads: dict[str, dict] = field(default_factory=dict)
    id_spec: dict | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint({"workspace": self.workspace, "sets": list(self.set_names),
                            "uploads": {k: v["spec"] for k, v in self.uploads.items()},
                            "detectors": self.detectors, "n_fit": self.n_fit, "id": self.id_spec})


def evaluate(resolver: Resolver, request: OODRequest, progress: Progress | None = None, cache=None) -> SuiteResult:
    """Extract outputs (cached by the resolver), then fit and score the detectors.

    ``cache`` (anything with ``get_or_compute``) keeps each fitted detector once per (model, fit set,
    validation set, parameters), and the scores of every set it has scored, so a later run with one
    more OOD set scores only that set. Unusable OOD sets are reported in ``result.set_errors`` and the
    others still run; :class:`OODError` when none can be used."""
    report = progress or (lambda f, m: None)
    ws = request.workspace
    detectors = {d: dict(p or {}) for d, p in request.detectors.items()}
    if not detectors:
        raise OODError("Choose at least one detector.")
    if not request.set_names:
        raise OODError("Choose at least one OOD set.")
    cands = candidate_sets(resolver, ws)
    cands.update(request.uploads)
    unknown = [s for s in request.set_names if s not in cands]
    if unknown:
        raise OODError(f"Unknown OOD set(s) {', '.join(map(repr, unknown))}; this workspace offers: "
                       f"{', '.join(cands)}.")
    fit_spec, eval_spec = fit_and_eval_specs(ws, request.n_fit)
    if request.id_spec is not None:
        fit_spec = fit_spec or ws["data"]  # an uploaded workspace: fit on all of it, evaluate on the ID upload
        eval_spec = request.id_spec
    needs_validation = any(d in REGISTRY and REGISTRY[d].fit_on == "validation" for d in detectors)
    val_spec = validation_spec(ws, request.n_fit) if needs_validation else None
    model = resolver.load_model(ws["model"], ws["data"])
    card = getattr(model, "card", {}) if model is not None else {}
    torch_model = model if hasattr(model, "forward") else None
    steps = len(request.set_names) + 2

    def outputs(spec: dict, label: str, step: int) -> ModelOutputs:
        return resolver.outputs(ws["model"], spec, model_data=ws["data"],
                                progress=lambda f, m: report((step + f) / steps, f"{label}: {m}"))

    report(0.0, "Running the model over the sets")
    eval_out = outputs(eval_spec, "ID evaluation set", 0)
    index = None
    id_inputs = input_batches(resolver, eval_spec, card) if torch_model is not None else None
    if fit_spec is not None:
        fit_out = outputs(fit_spec, "ID fit set (train split)", 0)
    else:
        fit_out, eval_out, index = split_outputs(eval_out, seed=0)
        id_inputs = input_batches(resolver, eval_spec, card, index) if torch_model is not None else None
    val_out = outputs(val_spec, "ID validation set (val split)", 0) if val_spec is not None else None
    sets = {"ID": EvalSet(eval_out, "id", id_inputs)}
    load_errors = {}
    for i, name in enumerate(request.set_names):
        c = cands[name]
        report((i + 1) / steps, f"Outputs of {name}")
        try:  # one unusable OOD set must not stop the others
            out = outputs(c["spec"], name, i + 1)
        except UserError as e:
            load_errors[name] = f"could not be used: {e}"
            continue
        mismatch = class_mismatch(out, eval_out)
        if mismatch:  # one message for the set, not one per detector
            load_errors[name] = f"could not be used: {mismatch}"
            continue
        inputs = (input_batches(resolver, c["spec"], card)
                  if (torch_model is not None and c["spec"]["kind"] == "builtin" or c.get("images")) else None)
        sets[name] = EvalSet(out, c["group"], inputs)
    if len(sets) < 2:
        raise OODError("None of the chosen OOD sets could be used: " + "; ".join(f"{k}: {v}" for k, v in load_errors.items()))
    # a detector is fitted once per (model, fit set, validation set, parameters) and then scores
    # only the sets it has not scored before, so adding an OOD set costs just that set
    base = key_of({"model": ws["model"], "fit": fit_spec or eval_spec, "validation": val_spec,
                   "split from": None if fit_spec is not None else eval_spec})
    set_keys = {"ID": key_of({"eval": eval_spec, "index": None if fit_spec is not None else "split"}),
                **{k: key_of(cands[k]["spec"]) for k in sets if k != "ID"}}

    def cache_key(det, params):
        return hashlib.sha1(f"{base}|{det}|{json.dumps(params, sort_keys=True)}".encode()).hexdigest()

    result = run_suite(fit_out, sets, "ID", detectors, model=torch_model, convention=request.convention,
                       progress=lambda f, m: report(min(1.0, (steps - 1 + f) / steps), f"Detectors: {m}"),
                       cache=cache, cache_key=cache_key, validation=val_out, set_keys=set_keys)
    result.set_errors.update(load_errors)
    result.id_index = index
    result.id_outputs = eval_out
    result.id_spec = eval_spec
    result.set_specs = {"ID": eval_spec, **{k: cands[k]["spec"] for k in sets if k != "ID"}}
    result.request = request
    result.fingerprint = request.fingerprint
    return result


def to_importances(result: SuiteResult, detector: str, workspace: dict) -> dict[str, Importance]:
    """The scores of ``detector`` on every set as importance distributions (unit "sample", scale "score"),
    labelled "OOD · <detector> · <set>", with provenance enough to re-run them."""
    name = REGISTRY.spec(detector).name
    out = {}
    for set_name, v in result.scores[detector].items():
        request = None
        if result.request is not None:  # the run of this one detector, to reproduce the values
            request = {f.name: getattr(result.request, f.name) for f in dataclasses.fields(result.request)}
            request["detectors"] = {detector: result.params.get(detector, {})}
        prov = make_provenance("ood", detector, result.params.get(detector, {}), model=workspace["model"],
                               data=result.set_specs.get(set_name, set_name), seed=workspace["data"].get("seed"),
                               set=set_name, workspace=workspace, fit_info=result.info.get(detector, {}),
                               request=request)
        out[f"OOD · {name} · {set_name}"] = Importance(values=v, unit="sample", scale="score", provenance=prov)
    return out


def auroc_heatmap(result: SuiteResult):
    """The AUROC of every detector (rows, best mean first) on every OOD set (columns) as a heatmap."""
    import core.viz as viz

    t = result.table
    dets = list(result.summary()["detector"])
    sets = list(dict.fromkeys(t["ood_set"]))
    z = np.full((len(dets), len(sets)), np.nan)
    for det, set_name, auroc in zip(t["detector"], t["ood_set"], t["auroc"]):
        z[dets.index(det), sets.index(set_name)] = auroc
    # the colours span chance (0.5) to perfect; every cell prints its value, so worse-than-chance cells
    # (all the same red) still read apart, while 0.7 vs 0.95 keeps its contrast
    return viz.heatmap_table(z, [REGISTRY.spec(d).name for d in dets], sets, title="AUROC per detector and OOD set",
                             zmin=0.5, zmax=1.0, colorbar_title="AUROC")


def report_section(result: SuiteResult, workspace: dict):
    """The OOD part of an HTML report (core.report.Section): the summary, the AUROC heatmap and the best
    detector's score distributions."""
    import core.viz as viz
    from core.report import Section
    from core.workspace import describe_data, describe_model

    summary = result.summary()
    if not summary.empty:
        summary.insert(1, "name", [REGISTRY.spec(d).name for d in summary["detector"]])
    figures = [auroc_heatmap(result)] if not result.table.empty else []
    if result.detectors:
        best = summary["detector"].iloc[0] if not summary.empty else result.detectors[0]
        figures.append(viz.score_distributions(result.scores[best], title=f"{REGISTRY.spec(best).name} scores "
                                               "(higher = more in-distribution)"))
    problems = [f"{REGISTRY.spec(d).name if d in REGISTRY else d}: {m}" for d, m in result.errors.items()]
    problems += [f"{k}: {m}" for k, m in result.set_errors.items()]
    text = (f"{len(result.detectors)} post-hoc detectors of {describe_model(workspace['model'])} on "
            f"{describe_data(workspace['data'])}: fitted on the model's training data, scored on the ID set and "
            f"{len(set(result.table['ood_set']))} OOD sets. FPR@95 follows the {result.convention} convention."
            + (" Not run: " + "; ".join(problems) if problems else ""))
    return Section("Out-of-distribution detection", text,
                   tables=[("One row per detector, sorted by mean AUROC.", summary),
                           ("Every detector on every OOD set.", result.table)], figures=figures)


def usable_detectors(resolver: Resolver, ws: dict) -> dict[str, str | None]:
    """Every detector -> why it cannot run on the workspace (None when it can)."""
    from . import unavailable_reason

    _, model, _, outputs = resolver.current(ws)
    has_model = hasattr(model, "forward")
    return {d: unavailable_reason(d, outputs, has_model=has_model) for d in REGISTRY.available()}


def default_request(resolver: Resolver, ws: dict, n_fit: int = DEFAULT_N_FIT, include_slow: bool = False) -> OODRequest:
    """The run a page or the audit starts with: the default sets and every usable detector (the slow ones
    only with ``include_slow``)."""
    cands = candidate_sets(resolver, ws)
    is_table = resolver.load_data(ws["data"]).kind == "table"
    usable = [d for d, r in usable_detectors(resolver, ws).items() if r is None]
    chosen = usable if include_slow else REGISTRY.default_selection(usable)
    return OODRequest(ws, tuple(default_sets(cands, is_table)), {d: REGISTRY[d].defaults for d in chosen},
                      n_fit=0 if is_table and ws["data"]["kind"] == "builtin" else n_fit)


__all__ = ["DEFAULT_SETS", "auroc_heatmap", "DEFAULT_TABLE_SETS", "OODRequest", "candidate_sets", "class_mismatch", "default_request",
           "default_sets", "evaluate", "fit_and_eval_specs", "id_upload_spec", "input_batches", "ood_upload_set",
           "report_section", "split_outputs", "table_candidate_sets", "to_importances", "usable_detectors", "validation_spec"]

