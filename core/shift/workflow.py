"""Workflows a page (or a notebook) calls: explanations from stored model outputs, never rerunning the model.

- :func:`shapes_case` draws a Shapes source and a shifted target (a preset of
  :data:`core.data.shapes.SHIFT_PRESETS`) and runs the model once on each (cached);
- :func:`explain_shapes_shift` explains the change between two Shapes datasets with their factor
  table as the variables and the world's recorded graph, so the shifted mechanism is known;
- :func:`explain_outputs_shift` explains the change between any two sets of model outputs
  without metadata: the variables are the label and the model's features (their leading
  principal components), and the change splits into label shift, P(label), and the change in
  P(features | label) (or, with ``direction="features->label"``, covariate and concept shift).

The page's run of a workspace (the same call from the page, the audit CLI and a notebook)::

    from core.workspace import Resolver, default_workspace
    from core.shift.workflow import default_request, evaluate

    resolver = Resolver()
    request = default_request(resolver, default_workspace())   # the background preset against the unshifted world
    run = evaluate(resolver, request, progress=lambda f, m: print(f"{f:4.0%} {m}"))
    run.explanation.to_frame()

- :class:`ShiftRequest` says what to compare (two data specs, optional row filters), the graph, the
  metric and the method's settings; :func:`scenario` says what the variables are (the Shapes
  factor table, a table's columns, or the label and the model's features) and offers the graph
  presets of :func:`graph_presets`; :func:`evaluate` runs the model over both datasets (through the
  resolver's shared caches) and explains the change; :class:`ShiftRun` is its result.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import softmax

from core.data.dataset import Dataset
from core.importance import Importance
from core.outputs import ModelOutputs

from .base import SETTINGS, ShiftError, ShiftSettings
from .explain import ShiftExplanation, explain_from_probabilities
from .graph import all_marginals, label_features_graph, shapes_graph, topological_order

Progress = Callable[[float, str], None]
LABEL = "label"


def _probabilities(outputs: ModelOutputs) -> np.ndarray:
    return softmax(outputs.logits.astype(np.float64), axis=1)


def _sub_progress(progress: Progress | None, start: float, stop: float) -> Progress | None:
    if progress is None:
        return None
    return lambda f, msg: progress(start + (stop - start) * f, msg)


def shapes_variables(dataset: Dataset, mechanisms: Sequence[str] | None = None) -> pd.DataFrame:
    """The factor columns of ``mechanisms`` (default: all) of a Shapes dataset, one row per image."""
    from core.data.shapes import MECHANISM_COLUMNS

    if dataset.factors is None:
        raise ShiftError(f"Dataset '{dataset.name}' has no factor table; Shapes explanations need the generative "
                         "factors (use explain_outputs_shift for data without metadata).")
    graph, groups = shapes_graph(mechanisms)
    cols = [c for m in graph for c in MECHANISM_COLUMNS[m]]
    missing = [c for c in cols if c not in dataset.factors.columns]
    if missing:
        raise ShiftError(f"Dataset '{dataset.name}' lacks the factor column(s) {', '.join(missing)}.")
    return dataset.factors[cols].reset_index(drop=True)


def shapes_mechanisms(*datasets: Dataset) -> list[str]:
    """The Shapes mechanisms the graph of ``datasets`` has: all of them but the optional ones
    (``OPTIONAL_MECHANISMS``, e.g. the distractor) that are off in every dataset: a mechanism absent
    from both sides is a dummy player with a Shapley value of exactly zero."""
    from core.data.shapes import MECHANISM_COLUMNS, MECHANISMS, OPTIONAL_MECHANISMS

    def on(m: str) -> bool:
        return any(ds.factors is not None and c in ds.factors.columns and bool(np.any(ds.factors[c].to_numpy() != 0))
                   for ds in datasets for c in MECHANISM_COLUMNS[m])

    return [m for m in MECHANISMS if m not in OPTIONAL_MECHANISMS or on(m)]


def _check_pair(outputs: ModelOutputs, dataset: Dataset, which: str) -> None:
    if not isinstance(outputs, ModelOutputs):
        raise ShiftError(f"The {which} outputs must be ModelOutputs (core.extract.run), got {type(outputs).__name__}.")
    if len(outputs) != len(dataset):
        raise ShiftError(f"The {which} outputs hold {len(outputs)} rows but the {which} dataset {len(dataset)}; they "
                         "must come from running the model on that dataset.")
    if outputs.labels is not None and not np.array_equal(outputs.labels, dataset.labels):
        raise ShiftError(f"The {which} outputs' labels differ from the {which} dataset's; were they computed on "
                         "another dataset (or another seed)?")


def explain_shapes_shift(outputs_source: ModelOutputs, outputs_target: ModelOutputs, dataset_source: Dataset,
                         dataset_target: Dataset, *, metric: str = "log_loss", mechanisms: Sequence[str] | None = None,
                         graph: Mapping[str, Sequence[str]] | None = None,
                         groups: Mapping[str, Sequence[str]] | None = None, n_boot: int = 0, seed: int = 0,
                         settings: ShiftSettings | Mapping[str, Any] | None = None, progress: Progress | None = None,
                         cache=None, **options) -> ShiftExplanation:
    """Explain the change in ``metric`` of one model between two Shapes datasets from its stored outputs.

    The variables are the datasets' factor tables; the graph is the Shapes world's
    (``MECHANISM_PARENTS``, nodes = mechanisms standing for their factor columns) unless ``graph``
    (and ``groups``) say otherwise; ``mechanisms`` keeps a subset of the players. The mechanisms the
    two datasets' presets changed (the ground truth) are ``result.changed_mechanisms``.
    Other arguments as :func:`core.shift.explain_from_probabilities`.
    """
    _check_pair(outputs_source, dataset_source, "source")
    _check_pair(outputs_target, dataset_target, "target")
    if outputs_source.num_classes != outputs_target.num_classes:
        raise ShiftError(f"The source outputs have {outputs_source.num_classes} classes, the target's "
                         f"{outputs_target.num_classes}; use the same model on both.")
    if mechanisms is None:
        mechanisms = shapes_mechanisms(dataset_source, dataset_target)
    default_graph, default_groups = shapes_graph(mechanisms)
    if graph is None:
        graph, groups = default_graph, default_groups
    used = None if graph is not default_graph else mechanisms
    vs, vt = shapes_variables(dataset_source, used), shapes_variables(dataset_target, used)
    vs[LABEL], vt[LABEL] = dataset_source.labels, dataset_target.labels
    model = str(outputs_source.meta.get("model", "")) if outputs_source.meta else ""
    shift_s, shift_t = dataset_source.params.get("shift") or "none", dataset_target.params.get("shift") or "none"
    provenance = {"model": model, "data": f"{dataset_source.name} ({shift_s}) → {dataset_target.name} ({shift_t})",
                  "source": f"{dataset_source.name}:{dataset_source.fingerprint()}",
                  "target": f"{dataset_target.name}:{dataset_target.fingerprint()}"}
    res = explain_from_probabilities(vs, vt, _probabilities(outputs_source), _probabilities(outputs_target),
                                     label=LABEL, graph=graph, groups=groups, metric=metric, seed=seed,
                                     categorical=["bg_type", "marker"], settings=settings, n_boot=n_boot,
                                     progress=progress, cache=cache, provenance=provenance, **options)
    changed = set(dataset_target.changed_mechanisms) ^ set(dataset_source.changed_mechanisms)
    res.changed_mechanisms = [m for m in res.nodes if m in changed]
    res.variables = "the Shapes factor table (ground truth known)"
    return res


def outputs_variables(outputs_source: ModelOutputs, outputs_target: ModelOutputs, n_components: int = 8,
                      seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Label and the leading principal components of the features (or of the log-probabilities when the
    outputs have no features) of both datasets, PCA fitted on the two pooled; and what was used."""
    from sklearn.decomposition import PCA

    for name, o in (("source", outputs_source), ("target", outputs_target)):
        if not isinstance(o, ModelOutputs):
            raise ShiftError(f"The {name} must be ModelOutputs, got {type(o).__name__}.")
        if o.labels is None:
            raise ShiftError(f"The {name} outputs carry no labels; explaining a performance change needs the labels "
                             "of both datasets.")
    use_features = outputs_source.features is not None and outputs_target.features is not None
    if use_features:
        if outputs_source.features.shape[1] != outputs_target.features.shape[1]:
            raise ShiftError("The source and target features have different dimensions "
                             f"({outputs_source.features.shape[1]} and {outputs_target.features.shape[1]}).")
        xs, xt, what = outputs_source.features, outputs_target.features, "features"
    else:
        xs = np.log(np.maximum(_probabilities(outputs_source), 1e-12))
        xt = np.log(np.maximum(_probabilities(outputs_target), 1e-12))
        what = "log-probabilities"
    pooled = np.vstack([xs, xt]).astype(np.float64)
    k = int(min(n_components, pooled.shape[1], len(pooled) - 1))
    pca = PCA(n_components=k, random_state=seed).fit(pooled)
    names = [f"pc{i + 1}" for i in range(k)]
    vs = pd.DataFrame(pca.transform(xs.astype(np.float64)), columns=names)
    vt = pd.DataFrame(pca.transform(xt.astype(np.float64)), columns=names)
    vs.insert(0, LABEL, outputs_source.labels)
    vt.insert(0, LABEL, outputs_target.labels)
    return vs, vt, f"{k} principal components of the {what}"


def explain_outputs_shift(outputs_source: ModelOutputs, outputs_target: ModelOutputs, *, metric: str = "log_loss",
                          direction: str = "label->features", n_components: int = 8, n_boot: int = 0, seed: int = 0,
                          settings: ShiftSettings | Mapping[str, Any] | None = None, progress: Progress | None = None,
                          cache=None, provenance: Mapping[str, Any] | None = None, **options) -> ShiftExplanation:
    """Explain the change in ``metric`` between two sets of model outputs that come without metadata.

    The variables are the label and the first ``n_components`` principal components of the
    penultimate features (of the log-probabilities when there are no features), PCA fitted on both
    sets pooled. ``direction="label->features"``: players P(label) and P(features | label);
    ``"features->label"``: P(features) and P(label | features). Labels of -1 (no class) are dropped.
    """
    keep_s = outputs_source.labels >= 0 if outputs_source.labels is not None else None
    keep_t = outputs_target.labels >= 0 if outputs_target.labels is not None else None
    if keep_s is not None and not keep_s.all():
        outputs_source = outputs_source.subset(np.flatnonzero(keep_s))
    if keep_t is not None and not keep_t.all():
        outputs_target = outputs_target.subset(np.flatnonzero(keep_t))
    vs, vt, what = outputs_variables(outputs_source, outputs_target, n_components, seed)
    graph, groups = label_features_graph(LABEL, [c for c in vs.columns if c != LABEL], direction)
    prov = {"model": str(outputs_source.meta.get("model", "")) if outputs_source.meta else "", **dict(provenance or {})}
    res = explain_from_probabilities(vs, vt, _probabilities(outputs_source), _probabilities(outputs_target),
                                     label=LABEL, graph=graph, groups=groups, metric=metric, seed=seed,
                                     settings=settings, n_boot=n_boot, progress=progress, cache=cache,
                                     provenance=prov, **options)
    res.variables = what
    return res


@dataclass
class ShapesShiftCase:
    """A Shapes source, a shifted target and one model's outputs on each (computed once)."""

    preset: str
    dataset_source: Dataset
    dataset_target: Dataset
    outputs_source: ModelOutputs
    outputs_target: ModelOutputs
    model: str

    @property
    def changed_mechanisms(self) -> list[str]:
        return list(self.dataset_target.changed_mechanisms)

    @property
    def nbytes(self) -> int:
        arrays = [self.dataset_source.images, self.dataset_target.images]
        return int(sum(a.nbytes for a in arrays if a is not None) + self.outputs_source.nbytes
                   + self.outputs_target.nbytes)

    def explain(self, **kwargs) -> ShiftExplanation:
        """:func:`explain_shapes_shift` on this case."""
        return explain_shapes_shift(self.outputs_source, self.outputs_target, self.dataset_source, self.dataset_target,
                                    **kwargs)


def shapes_case(model, preset: str, *, n: int = 1000, seed: int = 0, model_name: str | None = None,
                progress: Progress | None = None, cache=None, batch_size: int = 250) -> ShapesShiftCase:
    """Draw ``n`` Shapes test images as the source (seed ``seed``) and ``n`` under shift ``preset``
    as the target (seed ``seed + 1``), and run ``model`` once on each. ``cache`` keeps each
    dataset's outputs (keyed by the model's name and the dataset's fingerprint)."""
    from core.data import load
    from core.data.shapes import SHIFT_PRESETS
    from core.extract import run

    if preset not in SHIFT_PRESETS:
        raise ShiftError(f"Unknown Shapes shift preset {preset!r}; presets: {', '.join(SHIFT_PRESETS)}.")
    name = model_name or str(getattr(model, "card", {}).get("name", type(model).__name__))
    ds_s = load("shapes", split="test", n=n, seed=seed)
    ds_t = load("shapes", split="test", n=n, seed=seed + 1, shift=preset)
    outs = []
    for i, ds in enumerate((ds_s, ds_t)):
        sub = _sub_progress(progress, 0.5 * i, 0.5 * (i + 1))

        def compute(ds=ds, sub=sub):
            out = run(model, ds, batch_size=batch_size, progress=sub)
            out.meta.setdefault("model", name)
            return out

        if cache is not None:
            key = "shift-outputs:" + hashlib.sha1(f"{name}|{ds.fingerprint()}".encode()).hexdigest()[:16]
            outs.append(cache.get_or_compute(key, compute))
        else:
            outs.append(compute())
    if progress is not None:
        progress(1.0, "model outputs ready")
    return ShapesShiftCase(preset, ds_s, ds_t, outs[0], outs[1], name)


# ---------------------------------------------------------------------------- the page's run of a workspace
#: the Shapes preset the page and the audit compare with the unshifted world by default
DEFAULT_PRESET = "background"
#: bootstrap replicates of a default run (the rows bootstrap rides along in the coalition sums: ~0.05 s)
DEFAULT_BOOT = 200
#: principal components of the model's features used as variables when the data has no metadata
N_COMPONENTS = 8
#: row filters ``{"column": c, "op": op, "value": v}`` keep the rows where ``column op value`` holds
FILTER_OPS: dict[str, Callable[[Any, Any], Any]] = {"==": operator.eq, "!=": operator.ne, "<": operator.lt,
                                                   "<=": operator.le, ">": operator.gt, ">=": operator.ge}
#: settings a request may carry (every knob of core.shift.SETTINGS but the bootstrap count, a field of its own)
REQUEST_SETTINGS = frozenset(p.name for p in SETTINGS.params if p.name != "n_boot") | {"classifier_params"}


@dataclass(frozen=True)
class ShiftRequest:
    """Everything that decides a shift explanation of a workspace, JSON-able.

    ``workspace``: the model and data specs (the model is the workspace's). ``source``/``target``:
    data specs the resolver loads (the Shapes world without and with a shift preset, a table's train
    and test splits, uploads). ``source_where``/``target_where``: keep only the rows where
    ``{"column": c, "op": "<=", "value": v}`` holds (None: every row; ops are :data:`FILTER_OPS`).
    ``graph``: node → parent nodes and ``groups``: node → columns (None: the scenario's default
    graph, see :func:`scenario`). ``metric``: one of :func:`core.shift.metrics_available`;
    ``n_boot``: bootstrap replicates for the intervals; ``seed``: folds and bootstrap of the method;
    ``settings``: other keywords of :data:`core.shift.SETTINGS` (e.g. ``{"classifier": "logistic"}``,
    ``classifier_params``)."""

    workspace: dict
    source: dict
    target: dict
    source_where: dict | None = None
    target_where: dict | None = None
    graph: dict | None = None
    groups: dict | None = None
    metric: str = "log_loss"
    n_boot: int = DEFAULT_BOOT
    seed: int = 0
    settings: dict = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The request's fields (what provenance records, so a kept result can be rebuilt)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def fingerprint(self) -> str:
        from core.workspace import fingerprint

        return fingerprint(self.as_dict())


@dataclass(frozen=True)
class ShiftScenario:
    """What the variables of a comparison are, decided by the two datasets.

    ``kind``: "shapes" when both carry the Shapes factor table (the variables are the generative
    factors and the shifted mechanisms are known), "table" when both are tables (their columns),
    "outputs" otherwise (images without metadata, stored outputs: the label and the first
    principal components of the model's features). ``columns``: every variable (``label``
    included); ``graph``/``groups``: the default graph; ``variables``: what the variables are."""

    kind: str
    label: str
    columns: tuple[str, ...]
    graph: dict[str, list[str]]
    groups: dict[str, list[str]] | None
    variables: str

    @property
    def features(self) -> list[str]:
        return [c for c in self.columns if c != self.label]


def where_index(dataset: Dataset, where: Mapping[str, Any] | None, which: str) -> np.ndarray | None:
    """Rows of ``dataset`` that the filter ``where`` keeps (None: no filter)."""
    if where is None:
        return None
    frame = dataset.frame if dataset.frame is not None else dataset.factors
    if frame is None:
        raise ShiftError(f"The {which} ({dataset.name}) has no columns to filter on; row filters apply to tables and "
                         "to the Shapes factor table.")
    if not isinstance(where, Mapping) or not {"column", "op", "value"} <= set(where):
        raise ShiftError(f"A row filter is {{'column': name, 'op': one of {', '.join(FILTER_OPS)}, 'value': v}}; "
                         f"got {where!r}.")
    col, op, value = where["column"], where["op"], where["value"]
    if col not in frame.columns:
        raise ShiftError(f"The {which} filter names the column {col!r}, which the {which} does not have. Columns: "
                         f"{', '.join(map(str, frame.columns))}.")
    if op not in FILTER_OPS:
        raise ShiftError(f"Unknown filter operator {op!r}; use one of {', '.join(FILTER_OPS)}.")
    series = frame[col]
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ShiftError(f"Column {col!r} is numeric; the filter value {value!r} is not a number.") from None
        mask = FILTER_OPS[op](series.to_numpy(np.float64), number)
    else:
        if op not in ("==", "!="):
            raise ShiftError(f"Column {col!r} holds categories; filter it with == or !=, not {op}.")
        mask = FILTER_OPS[op](series.astype(str).to_numpy(), str(value))
    index = np.flatnonzero(mask)
    if not len(index):
        raise ShiftError(f"No row of the {which} ({len(frame)} rows) has {col} {op} {value}; choose another value.")
    return index


def describe_side(spec: dict, where: Mapping[str, Any] | None = None, dataset: Dataset | None = None) -> str:
    """A short name of one side of a comparison: the data and its filter (class names for the label)."""
    from core.workspace import describe_data

    text = describe_data(spec)
    if where:
        value = where.get("value")
        if dataset is not None and where.get("column") == dataset.label and dataset.class_names:
            try:
                value = dataset.class_names[int(value)]
            except (TypeError, ValueError, IndexError):
                pass
        text += f" where {where.get('column')} {where.get('op')} {value}"
    return text


def _has_shapes_factors(dataset: Dataset) -> bool:
    from core.data.shapes import MECHANISM_COLUMNS

    cols = [c for m, cs in MECHANISM_COLUMNS.items() if m != "class" for c in cs]
    return dataset.factors is not None and all(c in dataset.factors.columns for c in cols)


def _check_labelled(dataset: Dataset, which: str, label: str) -> None:
    if dataset.labels is None or not len(dataset.labels) or not (np.asarray(dataset.labels) >= 0).any():
        raise ShiftError(f"The {which} ({dataset.name}) carries no labels (no '{label}'); the change in performance "
                         f"needs the labels of both datasets. Give the {which} its label column.")


def _feature_dims(resolver, ws: dict, datasets: Sequence[Dataset]) -> int:
    """How many principal components the outputs scenario gets: N_COMPONENTS, or fewer when the features
    (log-probabilities without features) have fewer dimensions."""
    dims, all_features = [], True
    for ds in datasets:
        out = ds.outputs if ds.outputs is not None else resolver.outputs(ws["model"], ws["data"])
        if out.features is None:
            all_features = False
        dims.append((out.features.shape[1] if out.features is not None else None, out.num_classes))
    d = min(f for f, _ in dims) if all_features else min(c for _, c in dims)
    return int(min(N_COMPONENTS, d))


def _scenario_of(resolver, request: ShiftRequest, ds_s: Dataset, ds_t: Dataset) -> ShiftScenario:
    from .explain import _check_frames

    if _has_shapes_factors(ds_s) and _has_shapes_factors(ds_t):
        mechanisms = shapes_mechanisms(ds_s, ds_t)
        graph, groups = shapes_graph(mechanisms)
        columns = tuple(shapes_variables(ds_s, mechanisms).columns) + (LABEL,)
        return ShiftScenario("shapes", LABEL, columns, graph, groups, "the Shapes factor table (ground truth known)")
    if ds_s.kind == "table" and ds_t.kind == "table" and ds_s.frame is not None and ds_t.frame is not None:
        label = ds_s.label or ds_t.label
        if label is None:
            raise ShiftError(f"The source ({ds_s.name}) has no label column; explaining a performance change needs "
                             "the labels of both datasets.")
        _check_frames(ds_s.frame, ds_t.frame, label)  # same columns, the label in both: before any model run
        features = [str(c) for c in ds_s.frame.columns if c != label]
        graph, groups = label_features_graph(label, features)
        return ShiftScenario("table", label, tuple(map(str, ds_s.frame.columns)), graph, groups, "the table's columns")
    for which, ds in (("source", ds_s), ("target", ds_t)):
        _check_labelled(ds, which, LABEL)
    k = _feature_dims(resolver, request.workspace, (ds_s, ds_t))
    pcs = [f"pc{i + 1}" for i in range(k)]
    graph, groups = label_features_graph(LABEL, pcs)
    return ShiftScenario("outputs", LABEL, (LABEL, *pcs), graph, groups,
                         f"the label and {k} principal components of the model's features")


def scenario(resolver, request: ShiftRequest) -> ShiftScenario:
    """The :class:`ShiftScenario` of ``request``: loads both datasets (not the model's outputs) and checks
    the filters and, for tables, that both have the same columns and the label, so bad input is
    refused before any model run."""
    ds_s, ds_t = resolver.load_data(request.source), resolver.load_data(request.target)
    where_index(ds_s, request.source_where, "source")
    where_index(ds_t, request.target_where, "target")
    return _scenario_of(resolver, request, ds_s, ds_t)


def graph_presets(sc: ShiftScenario) -> dict[str, tuple[dict[str, list[str]], dict[str, list[str]] | None]]:
    """The graphs a graph editor offers as buttons, the scenario's default first: for the Shapes world
    its recorded graph; for tables and outputs label → features and features → label; and always
    all-marginals and the topological order (over the Shapes mechanisms, or over every column)."""
    if sc.kind == "shapes":
        nodes = list(sc.graph)
        return {"Shapes world (recorded graph)": (sc.graph, sc.groups),
                "All marginals": (all_marginals(nodes), sc.groups),
                "Topological order": (topological_order(nodes), sc.groups)}
    columns = [sc.label, *sc.features]
    return {"Label → features": label_features_graph(sc.label, sc.features, "label->features"),
            "Features → label": label_features_graph(sc.label, sc.features, "features->label"),
            "All marginals": (all_marginals(columns), None),
            "Topological order": (topological_order(columns), None)}


def graph_table(graph: Mapping[str, Sequence[str]], groups: Mapping[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """A graph as an editable table: one row per node with its parents and its columns (comma-separated;
    blank columns: the node is the column of that name)."""
    groups = groups or {}
    rows = []
    for node, parents in graph.items():
        cols = list(groups.get(node, []))
        rows.append({"node": str(node), "parents": ", ".join(map(str, parents)),
                     "columns": "" if cols == [node] else ", ".join(map(str, cols))})
    return pd.DataFrame(rows, columns=["node", "parents", "columns"])


def _split_names(text: Any) -> list[str]:
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return []
    return [t.strip() for t in str(text).split(",") if t.strip()]


def graph_from_table(table: pd.DataFrame) -> tuple[dict[str, list[str]], dict[str, list[str]] | None]:
    """(graph, groups) of an edited :func:`graph_table` (rows without a node are skipped)."""
    missing = {"node", "parents"} - set(table.columns)
    if missing:
        raise ShiftError(f"The graph table needs the columns node and parents (and optionally columns); "
                         f"{', '.join(sorted(missing))} missing.")
    graph: dict[str, list[str]] = {}
    groups: dict[str, list[str]] = {}
    for row in table.to_dict("records"):
        node = _split_names(row.get("node"))
        if not node:
            continue
        if len(node) > 1:
            raise ShiftError(f"A node is one name; the row {', '.join(node)!r} holds several (commas separate parents "
                             "and columns, not nodes).")
        node = node[0]
        if node in graph:
            raise ShiftError(f"Node '{node}' appears twice in the graph; give each node one row.")
        graph[node] = _split_names(row.get("parents"))
        cols = _split_names(row.get("columns"))
        if cols:
            groups[node] = cols
    if not graph:
        raise ShiftError("The graph is empty: give at least one node (a row with a node name).")
    return graph, groups or None


def check_graph(sc: ShiftScenario, graph: Mapping[str, Sequence[str]], groups: Mapping[str, Sequence[str]] | None):
    """The validated :class:`core.shift.ShiftGraph` of ``graph`` over the scenario's variables: a
    :class:`ShiftError` for a cycle, an unknown parent, a group naming unknown columns, or a label that
    belongs to no node."""
    from .graph import make_graph

    g = make_graph(graph, list(sc.columns), groups)
    if sc.label not in g.columns:
        raise ShiftError(f"The label '{sc.label}' belongs to no node of the graph. Add it as a node (or to a node's "
                         "columns) so that shifts in the label's distribution can be attributed.")
    return g


def _aligned_codes(codes: np.ndarray, names: Sequence[str], reference: Sequence[str], which: str) -> np.ndarray:
    """Class codes of a dataset (``names[code]``) as the model's codes (``reference``), matched by name, or
    by number when the dataset's classes are written as the model's class indices."""
    names, reference = [str(n) for n in names], [str(r) for r in reference]
    if not names or not reference or names == reference:
        return codes
    lookup = {}
    for code, name in enumerate(names):
        if name in reference:
            lookup[code] = reference.index(name)
        elif name.lstrip("-").isdigit() and 0 <= int(name) < len(reference):
            lookup[code] = int(name)
        else:
            raise ShiftError(f"The {which}'s label value {name!r} is not a class of the model ({', '.join(reference)}); "
                             "write the label as the model's class names or class indices.")
    out = np.asarray(codes, np.int64).copy()
    known = out >= 0
    out[known] = [lookup[int(c)] for c in out[known]]
    return out


def _model_name(ws: dict) -> str:
    from core.workspace import describe_model

    return describe_model(ws["model"])


@dataclass
class ShiftRun:
    """The result of :func:`evaluate`: the :class:`core.shift.ShiftExplanation` and what it explains.

    ``source_rows``/``target_rows``: the row of the source (target) dataset behind each explained
    row (filters and unlabelled rows leave some out), so per-row results (``weights``) map back to
    images and table rows. ``source_name``/``target_name``: short names of the two sides."""

    explanation: ShiftExplanation
    request: ShiftRequest
    fingerprint: str
    scenario: ShiftScenario
    source_rows: np.ndarray
    target_rows: np.ndarray
    source_name: str
    target_name: str

    @property
    def nbytes(self) -> int:
        return int(self.explanation.nbytes + self.source_rows.nbytes + self.target_rows.nbytes)

    @property
    def source_coverage(self) -> float:
        """Mean unnormalised weight of the source rows under all mechanisms: the share of the target's mass
        that lies where the source has data (1 when the source covers all of it)."""
        c = self.explanation.coalitions
        return float(c.source_coverage[c.masks == (1 << len(c.players)) - 1][0])

    def most_target_like(self, k: int = 16) -> pd.DataFrame:
        """The k source rows with the largest weight (the most target-like), largest first: their row in the
        source dataset and their weight under all mechanisms."""
        idx = self.explanation.most_target_like(k)
        return pd.DataFrame({"source_row": self.source_rows[idx], "weight": self.explanation.weights[idx]})

    def weights_frame(self) -> pd.DataFrame:
        """Every source row's weight under all mechanisms (clipped) and under each mechanism alone (unclipped)."""
        e = self.explanation
        out = pd.DataFrame({"source_row": self.source_rows, "weight": e.weights})
        for j, m in enumerate(e.mechanisms):
            out[f"w {m.name}"] = e.mechanism_weights[:, j]
        return out

    def attributions_frame(self) -> pd.DataFrame:
        """One row per mechanism (:meth:`core.shift.ShiftExplanation.to_frame`) with the comparison's names."""
        frame = self.explanation.to_frame()
        frame.insert(0, "target", self.target_name)
        frame.insert(0, "source", self.source_name)
        frame.insert(0, "metric", self.explanation.metric)
        return frame

    def to_dict(self) -> dict[str, Any]:
        """The JSON export: the request, the two sides, and the explanation's summary."""
        return {"request": self.request.as_dict(), "source": self.source_name, "target": self.target_name,
                "scenario": self.scenario.kind, **self.explanation.to_dict()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, default=str)

    def to_importances(self) -> dict[str, Importance]:
        """The attributions as importance over mechanisms (unit "mechanism", names "P(v | pa)") and the
        source rows' weights as importance over samples (unit "sample"; float32, not copied), with
        provenance that records the request (so :func:`core.codegen.snippet_from_provenance` rebuilds it)."""
        from core.importance import make_provenance

        e, ws = self.explanation, self.request.workspace
        params = {k: v for k, v in e.settings.as_dict().items()}
        common = dict(model=ws["model"], data=f"{self.source_name} → {self.target_name}", seed=self.request.seed,
                      workspace=ws, request=self.request.as_dict(), metric=e.metric, source=self.source_name,
                      target=self.target_name, scenario=self.scenario.kind)
        mech, samples = e.to_importances()
        return {
            f"Shift · {e.metric_name} change per mechanism · {self.target_name}": Importance(
                values=mech.values, unit="mechanism", names=mech.names,
                provenance=make_provenance("shift", "Shapley attribution of the performance change", params, **common)),
            f"Shift · importance weights · {self.source_name}": Importance(
                values=samples.values, unit="sample",
                provenance=make_provenance("shift", "importance weights (all mechanisms)", params, **common)),
        }


def evaluate(resolver, request: ShiftRequest, progress: Progress | None = None, cache=None) -> ShiftRun:
    """Run the workspace's model over the source and the target (outputs cached by the resolver) and
    explain the change in ``request.metric`` (:func:`explain_shapes_shift` for the Shapes world,
    :func:`core.shift.explain_from_probabilities` on a table's columns, or on the label and the
    model's features for data without metadata).

    ``cache`` (anything with ``get_or_compute``) keeps the fitted density ratios, so a rerun with
    another metric, estimator or bootstrap refits nothing. Bad input raises :class:`ShiftError`
    (or the data's own :class:`core.errors.UserError`) before the model runs where it can."""
    report = progress or (lambda f, m: None)
    ws = request.workspace
    unknown = sorted(set(request.settings) - REQUEST_SETTINGS)
    if unknown:
        raise ShiftError(f"Unknown setting(s) {', '.join(unknown)}; settings are "
                         f"{', '.join(sorted(REQUEST_SETTINGS))} (the bootstrap count is the request's n_boot).")
    report(0.0, "Loading the data")
    ds_s, ds_t = resolver.load_data(request.source), resolver.load_data(request.target)
    idx_s = where_index(ds_s, request.source_where, "source")
    idx_t = where_index(ds_t, request.target_where, "target")
    sc = _scenario_of(resolver, request, ds_s, ds_t)
    graph = request.graph if request.graph is not None else sc.graph
    groups = request.groups if request.graph is not None else sc.groups
    check_graph(sc, graph, groups)  # a bad graph fails before the model runs

    def outputs(spec: dict, which: str, lo: float, hi: float) -> ModelOutputs:
        return resolver.outputs(ws["model"], spec, model_data=ws["data"],
                                progress=lambda f, m: report(lo + (hi - lo) * f, f"model on the {which}: {m}"))

    out_s = outputs(request.source, "source", 0.0, 0.3)
    out_t = outputs(request.target, "target", 0.3, 0.6)
    if out_s.num_classes != out_t.num_classes:
        raise ShiftError(f"The model gives {out_s.num_classes} classes on the source but {out_t.num_classes} on the "
                         "target; were the two sets of outputs produced by different models?")
    rows_s = np.arange(len(ds_s)) if idx_s is None else idx_s
    rows_t = np.arange(len(ds_t)) if idx_t is None else idx_t
    names = (describe_side(request.source, request.source_where, ds_s),
             describe_side(request.target, request.target_where, ds_t))
    sub = _sub_progress(report, 0.6, 1.0)
    common = dict(metric=request.metric, n_boot=request.n_boot, seed=request.seed, settings=dict(request.settings),
                  progress=sub, cache=cache)
    provenance = {"model": _model_name(ws), "data": f"{names[0]} → {names[1]}", "source": names[0],
                  "target": names[1]}
    if sc.kind == "shapes":
        sub_s, sub_t = ds_s.subset(rows_s), ds_t.subset(rows_t)
        explanation = explain_shapes_shift(out_s.subset(rows_s), out_t.subset(rows_t), sub_s, sub_t, graph=graph,
                                           groups=groups, **common)
        explanation.provenance.update(provenance)
    elif sc.kind == "table":
        reference = resolver.load_data(ws["data"]).class_names
        frames = []
        for which, ds, rows in (("source", ds_s, rows_s), ("target", ds_t, rows_t)):
            frame = ds.frame.iloc[rows].reset_index(drop=True)
            if ds.label is not None and ds.class_names:
                frame = frame.assign(**{sc.label: _aligned_codes(frame[sc.label].to_numpy(), ds.class_names,
                                                                 reference, which)})
            frames.append(frame)
        explanation = explain_from_probabilities(
            frames[0], frames[1], _probabilities(out_s.subset(rows_s)), _probabilities(out_t.subset(rows_t)),
            label=sc.label, graph=graph, groups=groups, classes=list(range(out_s.num_classes)),
            provenance=provenance, **common)
        explanation.variables = sc.variables
    else:
        reference = resolver.load_data(ws["data"]).class_names
        sides = []
        for which, ds, out, rows in (("source", ds_s, out_s, rows_s), ("target", ds_t, out_t, rows_t)):
            labels = _aligned_codes(np.asarray(out.labels if out.labels is not None else ds.labels)[rows],
                                    ds.class_names, reference, which)
            keep = labels >= 0  # rows of no class (-1) say nothing about performance
            rows = rows[keep]
            sides.append((dataclasses.replace(out.subset(rows), labels=labels[keep]), rows))
        (o_s, rows_s), (o_t, rows_t) = sides
        vs, vt, what = outputs_variables(o_s, o_t, len(sc.features), request.seed)
        explanation = explain_from_probabilities(vs, vt, _probabilities(o_s), _probabilities(o_t), label=LABEL,
                                                 graph=graph, groups=groups, provenance=provenance, **common)
        explanation.variables = what
    return ShiftRun(explanation=explanation, request=request, fingerprint=request.fingerprint, scenario=sc,
                    source_rows=np.asarray(rows_s, np.int64), target_rows=np.asarray(rows_t, np.int64),
                    source_name=names[0], target_name=names[1])


def default_request(resolver, ws: dict, preset: str = DEFAULT_PRESET, n_boot: int = DEFAULT_BOOT,
                    seed: int = 0) -> ShiftRequest:
    """The comparison a page or the audit starts with: for the Shapes world, shift preset ``preset``
    (target, the next sample seed) against the unshifted world (source, the workspace's sample);
    for a built-in table, its train split against its test split. Other workspaces have no built-in
    comparison (:class:`ShiftError`): give a source and a target."""
    from core.workspace import describe_data

    d = ws["data"]
    if d.get("kind") == "builtin" and d.get("name") == "shapes":
        source = {**d, "shift": None}
        return ShiftRequest(ws, source, {**source, "shift": preset, "seed": int(d.get("seed") or 0) + 1},
                            n_boot=n_boot, seed=seed)
    if d.get("kind") == "builtin" and resolver.load_data(d).kind == "table":
        return ShiftRequest(ws, {**d, "split": "train", "n": None}, {**d, "split": "test", "n": None},
                            n_boot=n_boot, seed=seed)
    raise ShiftError(f"The workspace's data ({describe_data(d)}) has no built-in comparison: shift attribution "
                     "needs a source and a target (the Shapes world and its shift presets, a built-in table's train "
                     "and test splits, or two uploads).")


def report_section(run: ShiftRun, workspace: dict):
    """The shift part of an HTML report (core.report.Section): the waterfall, the attributions with
    their diagnostics, the importance weights and the per-column drift."""
    from core.report import Section
    from core.viz.shift import drift_effects, drift_table_view, explanation_waterfall, weight_histogram

    e = run.explanation
    lo, hi = e.total_ci
    interval = f" (95% interval {lo:+.4g} to {hi:+.4g})" if np.isfinite(lo) else ""
    top = max(e.nodes, key=lambda n: abs(e.attributions[n]))
    names = e.mechanism_names
    truth = (f" The mechanisms the data changed (ground truth): {', '.join(e.changed_mechanisms)}."
             if e.changed_mechanisms else "")
    text = (f"{e.metric_name} of {_model_name(workspace)} from {run.source_name} ({e.n_source} rows) to "
            f"{run.target_name} ({e.n_target} rows): {e.source_performance:.4g} → {e.target_performance:.4g}, a change "
            f"of {e.total:+.4g}{interval}. Variables: {e.variables}; {len(e.nodes)} mechanisms, Shapley values "
            f"({e.diagnostics.shapley}) of importance-weighted coalition values (Zhang et al., ICML 2023). The largest "
            f"share: {names[top]} ({e.attributions[top]:+.4g}).{truth}"
            + (" Warnings: " + " ".join(e.diagnostics.warnings) if e.diagnostics.warnings else ""))
    figures = [explanation_waterfall(e), weight_histogram(e.weights, ess=e.diagnostics.ess,
                                                          clip=e.settings.clip_weight)]
    tables = [("One row per mechanism: its attribution (Shapley value), interval, and its weights' diagnostics.",
               e.to_frame())]
    if e.drift is not None:
        figures.append(drift_effects(e.drift))
        tables.append(("Drift per column, largest effect first.", drift_table_view(e.drift)))
    return Section("Distribution-shift attribution", text, tables=tables, figures=figures)


__all__ = ["DEFAULT_BOOT", "DEFAULT_PRESET", "FILTER_OPS", "N_COMPONENTS", "ShapesShiftCase", "ShiftRequest", "ShiftRun",
           "ShiftScenario", "check_graph", "default_request", "describe_side", "evaluate", "explain_outputs_shift",
           "explain_shapes_shift", "graph_from_table", "graph_presets", "graph_table", "outputs_variables",
           "report_section", "scenario", "shapes_case", "shapes_variables", "where_index"]
