"""The shift-attribution page's widget groups. The workflow itself is core.shift.workflow; this module
connects it to widgets, the shared cache and a progress bar, and draws the results."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import streamlit as st

import core.data as data
from core import shift
from core.shift import workflow
from core.shift.workflow import ShiftRequest, ShiftRun, ShiftScenario
from core.viz import shift as viz_shift

from . import importance_store, tables
from . import workspace as wsp
from .cache import shared_figure, shared_run
from .params import param_controls

#: how the source and the target are chosen, by what the workspace offers
SIDE_CHOICES = {"preset": "a shift preset of the Shapes world", "split": "the table's train split vs its test split",
                "filter": "the workspace's rows vs a subgroup (a filter on a column)", "uploads": "two uploads"}
#: settings shown in the popover (the bootstrap count has its own control; threads are the server's business)
HIDDEN_SETTINGS = ("n_boot", "threads")


# ---------------------------------------------------------------- source and target
def side_choices(ws: dict, dataset: data.Dataset) -> list[str]:
    """The ways to pick a source and a target that the workspace offers."""
    d = ws["data"]
    if d["kind"] == "builtin" and d["name"] == "shapes":
        return ["preset", "uploads"]
    if dataset.kind == "table":
        return (["split"] if d["kind"] == "builtin" else []) + ["filter", "uploads"]
    return ["uploads"]


def _upload_spec(up, is_table: bool, label: str | None) -> dict:
    """The data spec of an uploaded source or target. A table keeps the workspace's label column when it has
    one (a single class is accepted here, so that the explanation can say why it cannot use it) and is read
    unlabelled otherwise (then the explanation says the label is missing)."""
    options = {}
    if is_table:
        from core.data.uploads import read_table_columns

        columns = read_table_columns(up.getvalue(), up.name)[0]
        options = {"label": label, "min_classes": 1} if label and label in columns else {"unlabelled": True}
    return wsp.data_upload_spec(up.name, up.getvalue(), **options)


def side_controls(ws: dict, dataset: data.Dataset) -> dict | None:
    """Widgets choosing the source and the target; returns the request's fields ``source``, ``target``,
    ``source_where``, ``target_where`` (None while an upload is missing)."""
    d = ws["data"]
    choices = side_choices(ws, dataset)
    how = st.radio("Compare", choices, key="shift_sides", horizontal=True, format_func=SIDE_CHOICES.get,
                   help="The source is where the model's performance is the reference; the target is where it "
                        "changed. The explanation says which changes in the data's distribution account for it.")
    if how == "preset":
        presets = data.shift_presets()
        c1, c2, c3 = st.columns([2, 1, 1])
        preset = c1.selectbox("Target: the Shapes world under the shift preset", presets,
                              index=presets.index(workflow.DEFAULT_PRESET), key="shift_preset",
                              format_func=lambda p: f"{p} (changes {', '.join(_changed(p))})")
        n = int(c2.number_input("Images per side", 100, 5000, int(d.get("n") or 500), step=100, key="shift_n",
                                help="Each side is rendered and run through the model once (cached for everyone)."))
        seed = int(c3.number_input("Sample seed", 0, 10_000, int(d.get("seed") or 0), key="shift_sample_seed",
                                   help="The source uses this seed, the target the next one: independent samples."))
        c1.caption(f"{data.describe_shift(preset)} Source: the unshifted world (seed {seed}); target: seed {seed + 1}.")
        source = {**d, "n": n, "seed": seed, "shift": None}
        return {"source": source, "target": {**source, "shift": preset, "seed": seed + 1},
                "source_where": None, "target_where": None}
    if how == "split":
        train = wsp.load_data(d, split="train", n=None)
        test = wsp.load_data(d, split="test", n=None)
        st.caption(f"Source: the training split ({len(train)} rows; the model was fitted on them). Target: the test "
                   f"split ({len(test)} rows). Without a real distribution shift, the gap between them is the model's "
                   "overfitting, which no mechanism explains: expect a large residual and wide intervals.")
        return {"source": {**d, "split": "train", "n": None}, "target": {**d, "split": "test", "n": None},
                "source_where": None, "target_where": None}
    if how == "filter":
        return {"source": d, "target": d, "source_where": None, "target_where": filter_controls(dataset)}
    is_table = dataset.kind == "table"
    kinds = ["csv", "parquet"] if is_table else ["zip", "npz"]
    what = ("tables with the workspace's feature columns and its label column "
            f"'{dataset.label}'" if is_table else "an image .zip (one folder per class) or model outputs (.npz)")
    c1, c2 = st.columns(2)
    up_s = c1.file_uploader("Source", type=kinds, key="shift_upload_source", help=f"The reference data: {what}.")
    up_t = c2.file_uploader("Target", type=kinds, key="shift_upload_target", help=f"The shifted data: {what}.")
    if up_s is None or up_t is None:
        st.info(f"Upload a source and a target ({what}).")
        return None
    with wsp.guard("These uploads cannot be used") as ok:
        source = _upload_spec(up_s, is_table, dataset.label)
        target = _upload_spec(up_t, is_table, dataset.label)
    if not ok[0]:
        return None
    return {"source": source, "target": target, "source_where": None, "target_where": None}


def _changed(preset: str) -> list[str]:
    from core.data.shapes import SHIFT_PRESETS

    return list(SHIFT_PRESETS[preset][1])


def filter_controls(dataset: data.Dataset) -> dict:
    """Column, operator and value of the target's filter (the label offers its class names)."""
    frame = dataset.frame
    columns = [str(c) for c in frame.columns]
    c1, c2, c3 = st.columns([2, 1, 2])
    column = c1.selectbox("Target: the rows where", columns, key="shift_filter_column",
                          index=columns.index(dataset.feature_names[0]) if dataset.feature_names else 0)
    if column == dataset.label:
        op = c2.selectbox("is", ["==", "!="], key="shift_filter_op_label")
        names = list(dataset.class_names)
        value = c3.selectbox("class", list(range(len(names))), key="shift_filter_class",
                             format_func=lambda k: names[k])
    else:
        series = frame[column]
        op = c2.selectbox("is", list(workflow.FILTER_OPS), index=list(workflow.FILTER_OPS).index(">="),
                          key="shift_filter_op")
        value = float(c3.number_input("value", value=float(series.median()), key=f"shift_filter_value_{column}",
                                      format="%.6g", help=f"{column}: median {series.median():.4g}, range "
                                                          f"{series.min():.4g} to {series.max():.4g}."))
    where = {"column": column, "op": op, "value": value}
    try:
        n = len(workflow.where_index(dataset, where, "target"))
    except shift.ShiftError:
        n = 0
    st.caption(f"Source: all {len(dataset)} rows of {wsp.describe_data(wsp.get()['data'])}. Target: the {n} of them "
               "where the condition holds: how does the model do on this subgroup, and which differences of the "
               "subgroup account for it?")
    return where


# ---------------------------------------------------------------- the graph
def _set_graph(sc_key, table: pd.DataFrame) -> None:
    old = st.session_state.get("shift_graph") or {}
    st.session_state["shift_graph"] = {"scenario": sc_key, "table": table, "version": old.get("version", 0) + 1}


def graph_editor(sc: ShiftScenario) -> tuple[dict | None, dict | None, bool]:
    """Preset buttons and an editable node → parents table; returns (graph, groups, valid). The graph is
    None when it is the scenario's default (the request then says "the default graph")."""
    presets = workflow.graph_presets(sc)
    sc_key = (sc.kind, tuple(sc.columns))
    state = st.session_state.get("shift_graph")
    if state is None or state["scenario"] != sc_key:  # a new scenario starts from its default graph
        _set_graph(sc_key, workflow.graph_table(sc.graph, sc.groups))
        state = st.session_state["shift_graph"]
    st.markdown("**Causal graph** (each row a node, its parents, and the columns it stands for; blank columns: the "
                "column of that name)")
    cols = st.columns(len(presets))
    for i, (col, (name, (g, groups))) in enumerate(zip(cols, presets.items())):
        col.button(name, key=f"shift_graph_preset_{i}", on_click=_set_graph,
                   args=(sc_key, workflow.graph_table(g, groups)), width="stretch")
    edited = st.data_editor(
        state["table"], key=f"shift_graph_editor_{state['version']}", num_rows="dynamic", hide_index=True,
        width="stretch", column_config={
            "node": st.column_config.TextColumn("node", help="A mechanism's variable (a name)."),
            "parents": st.column_config.TextColumn("parents", help="Parent nodes, comma-separated (blank: a root)."),
            "columns": st.column_config.TextColumn("columns", help="The data's columns this node stands for, "
                                                                   "comma-separated (blank: the column of its name)."),
        })
    graph = groups = None
    with wsp.guard("This graph cannot be used") as ok:
        graph, groups = workflow.graph_from_table(edited)
        g = workflow.check_graph(sc, graph, groups)
        method = ("exact Shapley values" if len(g.mechanisms) <= shift.MAX_EXACT_PLAYERS
                  else "permutation sampling (more than 10 players)")
        st.caption(f"{len(g.mechanisms)} mechanisms, {method}: " + ", ".join(m.name for m in g.mechanisms)
                   + f". Variables: {sc.variables}.")
        if g.to_dict() == workflow.check_graph(sc, sc.graph, sc.groups).to_dict():
            graph = groups = None
    return graph, groups, ok[0]


# ---------------------------------------------------------------- metric and settings
def metric_controls(n_classes: int) -> tuple[str, int, int]:
    caps = shift.metric_capabilities("classification", n_classes)
    reasons = {m: shift.METRICS.unavailable_reason(m, caps) for m in shift.metrics_available()}
    usable = [m for m, r in reasons.items() if r is None]
    c1, c2, c3 = st.columns(3)
    metric = c1.selectbox("Metric", usable, index=usable.index("log_loss"), key="shift_metric",
                          format_func=lambda m: shift.METRICS.spec(m).name,
                          help="Log loss moves even when a near-perfect model's accuracy barely does.")
    n_boot = int(c2.number_input("Bootstrap replicates", 0, 2000, workflow.DEFAULT_BOOT, step=50, key="shift_n_boot",
                                 help="Resamples the rows of both datasets (weights kept) for the intervals; 0: none."))
    seed = int(c3.number_input("Seed", 0, 10_000, 0, key="shift_seed", help="Folds of the domain classifiers and "
                                                                             "the bootstrap."))
    for m, r in reasons.items():
        if r:
            c1.caption(f":material/block: {shift.METRICS.spec(m).name}: {r}")
    return metric, n_boot, seed


def settings_controls() -> dict:
    """The method's settings (core.shift.SETTINGS) in a popover; returns only those that differ from the defaults."""
    spec = dataclasses.replace(shift.SETTINGS, params=tuple(p for p in shift.SETTINGS.params
                                                            if p.name not in HIDDEN_SETTINGS))
    with st.popover("Method settings", icon=":material/tune:"):
        st.caption(shift.SETTINGS.reference)
        values = param_controls(spec, "shift_set_")
        clf = shift.CLASSIFIERS.spec(values["classifier"])
        st.caption(f"**{clf.name}** ({clf.reference})")
        clf_params = param_controls(clf, f"shift_clf_{clf.id}_")
    out = {k: v for k, v in values.items() if v != spec.param(k).default}
    clf_params = {k: v for k, v in clf_params.items() if v != clf.param(k).default}
    if clf_params:
        out["classifier_params"] = clf_params
    return out


# ---------------------------------------------------------------- running
def scenario(request: ShiftRequest) -> ShiftScenario:
    return workflow.scenario(wsp.resolver(), request)


def run(request: ShiftRequest) -> ShiftRun:
    """The explanation of ``request`` (core.shift.workflow.evaluate) behind a progress bar, shared through the
    results cache under the request's fingerprint (one computation for every session asking the same); the
    fitted density ratios are cached there too, so changing the metric or the bootstrap refits nothing."""
    result = shared_run("shift", request, workflow.evaluate, "Explaining the change")
    return result


# ---------------------------------------------------------------- showing
def _fmt(v: float, digits: int = 4) -> str:
    return "—" if v is None or not np.isfinite(v) else f"{v:.{digits}g}"


def summary(result: ShiftRun) -> None:
    e = result.explanation
    c1, c2, c3, c4 = st.columns([1, 1, 1.4, 1])
    c1.metric(f"{e.metric_name} on the source", _fmt(e.source_performance), help=result.source_name)
    c2.metric(f"{e.metric_name} on the target", _fmt(e.target_performance), delta=f"{e.total:+.4g}",
              delta_color="normal" if e.higher_is_better else "inverse", help=result.target_name)
    lo, hi = e.total_ci
    c3.metric("95% interval of the change", f"{lo:+.2g} … {hi:+.2g}" if np.isfinite(lo) else "no bootstrap",
              help="Percentile interval of the total change over the bootstrap replicates.")
    c4.metric("Target mass the source covers", f"{result.source_coverage:.1%}",
              help="The mean importance weight of the source rows before normalising: the share of the target's "
                   "distribution that lies where the source has data. Near 0, the source alone cannot say what the "
                   "target looks like and the explanation leans on the target re-weighted back to the source.")
    st.caption(f"Source: {result.source_name} ({e.n_source} rows). Target: {result.target_name} ({e.n_target} rows). "
               f"Variables: {e.variables}.")
    if e.changed_mechanisms:
        st.success("The mechanism(s) this preset changed (the ground truth): " + ", ".join(
            e.mechanism_names.get(m, m) for m in e.changed_mechanisms), icon=":material/verified:")
    if e.significant is False:
        st.info("The interval of the total change includes 0: the performance may not have changed at all, so the "
                "attributions split noise. Try more samples, or a metric that moves (log loss).",
                icon=":material/info:")
    for w in e.diagnostics.warnings:
        st.warning(w, icon=":material/warning:")


def waterfall(result: ShiftRun):
    return shared_figure(result.fingerprint, "waterfall", lambda: viz_shift.explanation_waterfall(result.explanation))


def attributions_tab(result: ShiftRun) -> None:
    e = result.explanation
    frame = e.to_frame().drop(columns=["node"])
    tables.show(frame, {"share_of_total": "{:.1%}", "ess_share": "{:.1%}", "share_clipped": "{:.1%}"}, precision=4)
    d = e.diagnostics
    st.caption(f"attribution: the mechanism's Shapley value ({d.shapley}, {d.n_coalitions} coalitions); the "
               f"attributions add up to the total change {e.total:+.4g}. value_alone: the change if only this "
               "mechanism had shifted. The estimated game accounts for "
               f"{e.total - d.residual:+.4g}; the rest ({d.residual:+.4g}) was shared by the '{e.settings.efficiency}' "
               "rule. Coverage: the share of one dataset's mass the other covers under this mechanism.")
    with st.expander("Every coalition"):
        tables.show(e.coalitions.to_frame(), precision=4)


def weights_tab(result: ShiftRun) -> None:
    e = result.explanation
    st.plotly_chart(shared_figure(result.fingerprint, "weights", lambda: viz_shift.weight_histogram(
        e.weights, ess=e.diagnostics.ess, clip=e.settings.clip_weight,
        title="Importance weights of the source rows (all mechanisms)")), width="stretch")
    d = e.diagnostics
    c1, c2, c3 = st.columns(3)
    c1.metric("ESS of the source", f"{d.ess:,.0f} of {e.n_source}", help="Source re-weighted towards the target.")
    c2.metric("ESS of the target", f"{d.target_ess:,.0f} of {e.n_target}", help="Target re-weighted towards the source.")
    c3.metric("Rows at the clip", f"{d.share_clipped:.1%}", help=f"Weights are clipped at {e.settings.clip_weight:g}.")
    rows = [{"mechanism": r.mechanism.name, "weight 1%": r.weight_quantiles[0], "median": r.weight_quantiles[1],
             "weight 99%": r.weight_quantiles[2], "ESS share": r.ess_share, "share clipped": r.share_clipped}
            for r in d.mechanisms]
    tables.show(pd.DataFrame(rows), {"ESS share": "{:.1%}", "share clipped": "{:.1%}"}, precision=3)
    st.caption("w = p_target/p_source of each mechanism, from the odds of cross-fitted, calibrated domain "
               "classifiers; a source row's weight under all mechanisms is their product (clipped).")


def drift_tab(result: ShiftRun) -> None:
    e = result.explanation
    if e.drift is None:
        st.info("No drift table for this run.")
        return
    st.plotly_chart(shared_figure(result.fingerprint, "drift", lambda: viz_shift.drift_effects(e.drift)),
                    width="stretch")
    st.dataframe(viz_shift.drift_table_view(e.drift), hide_index=True, width="stretch")
    st.caption("Sorted by effect size (normed Wasserstein distance for numbers, Jensen–Shannon distance for "
               "categories). Tests: KS or chi² for small samples, the effect size against its threshold for large ones.")
    c1, c2 = st.columns(2)
    if e.c2st is not None:
        c1.metric("Domain classifier (C2ST) AUC", f"{e.c2st.auc:.3f}", help="How well a classifier on all the "
                  f"variables tells target from source rows (0.5: not at all); p-value {e.c2st.p_value:.2g}.")
    if e.label_shift is not None:
        ls = e.label_shift
        c2.markdown(f"**Label shift estimate ({ls.method})**")
        tables.show(pd.DataFrame({"class": range(len(ls.source_prior)), "source prior": ls.source_prior,
                                  "estimated target prior": ls.target_prior,
                                  **({"observed target prior": ls.observed_target_prior}
                                     if ls.observed_target_prior is not None else {})}), precision=3, target=c2)


def samples_tab(result: ShiftRun) -> None:
    k = st.select_slider("How many", [8, 16, 32], value=16, key="shift_k")
    top = result.most_target_like(k)
    st.caption("The source rows with the largest importance weight: the ones that look most like the target.")
    ds = wsp.load_data(result.request.source)
    if ds.images is not None:
        cols = st.columns(8)
        for i, (row, w) in enumerate(zip(top["source_row"], top["weight"])):
            with cols[i % 8]:
                st.image(ds.images[int(row)], caption=f"row {int(row)} · w = {w:.3g}", width="stretch")
        return
    if ds.frame is not None:
        rows = ds.frame.iloc[top["source_row"].to_numpy()].reset_index(drop=True)
        rows.insert(0, "weight", top["weight"].to_numpy())
        rows.insert(0, "source row", top["source_row"].to_numpy())
        tables.show(rows, precision=4)
        return
    out = wsp.outputs_for(result.request.workspace["model"], result.request.source,
                          model_data=result.request.workspace["data"])
    rows = top.assign(label=out.labels[top["source_row"]] if out.labels is not None else -1,
                      prediction=out.preds[top["source_row"]])
    st.dataframe(rows, hide_index=True, width="stretch")


def diagnostics_tab(result: ShiftRun) -> None:
    e = result.explanation
    d = e.diagnostics
    c1, c2, c3 = st.columns(3)
    c1.metric("Observed change", f"{e.total:+.4g}")
    c2.metric("Source side's estimate", f"{d.source_side_change:+.4g}",
              help="The whole change estimated from the source re-weighted by all mechanisms.")
    c3.metric("Target side's estimate", f"{d.target_side_change:+.4g}",
              help="The whole change estimated from the target re-weighted back to the source.")
    st.caption("Each side alone estimates the whole change only where it covers the other dataset. When a shift "
               "leaves the other's support (textures never seen in the source) both fall short, and each coalition "
               f"is estimated from the side that covers it (estimator '{d.estimator}').")
    everything = tuple(e.graph.order)
    rows = [{"classifier on": "all variables (C2ST)" if c.nodes == everything else c.label, "columns": len(c.columns),
             "AUC": c.auc, "Brier": c.brier, "calibration error": c.ece, "share clipped": c.share_clipped, "seconds": c.seconds,
             "note": c.skipped or ""} for c in d.classifiers]
    tables.show(pd.DataFrame(rows), precision=3)
    st.caption("Each domain classifier tells target from source rows on a node and its parents (out-of-fold). AUC "
               "0.5: that part of the data did not shift; calibration error: how far its probabilities are from "
               "the observed shares (its odds ratios are the weights).")
    curves = {"all variables" if c.nodes == everything else c.label: c.reliability for c in d.classifiers
              if c.skipped is None and len(c.reliability)}
    if curves:
        st.plotly_chart(shared_figure(result.fingerprint, "reliability",
                                      lambda: viz_shift.reliability_curves(curves)), width="stretch")
    if not d.warnings:
        st.success("No overlap, clipping or calibration warnings.", icon=":material/check_circle:")
    t = d.timings
    st.caption(f"Seconds: classifiers {t.classifiers:.2f} (fits {t.classifier_fits:.2f}, {t.cached_classifiers} "
               f"reused from the cache), coalitions {t.coalitions:.3f}, audit {t.audit:.2f}, total {t.total:.2f}. "
               f"Estimator: {d.estimator}.")


def views(result: ShiftRun) -> None:
    tabs = st.tabs(["Attributions", "Importance weights", "Drift per column", "Most target-like samples",
                    "Diagnostics"])
    for tab, view in zip(tabs, (attributions_tab, weights_tab, drift_tab, samples_tab, diagnostics_tab)):
        with tab:
            view(result)


def export(result: ShiftRun) -> None:
    c1, c2, c3, c4 = st.columns([1, 1, 1, 1.6])
    c1.download_button("Attributions (CSV)", lambda: result.attributions_frame().to_csv(index=False).encode(),
                       "shift_attributions.csv", "text/csv", key="shift_dl_csv", on_click="ignore",
                       help="One row per mechanism: attribution, interval, share and diagnostics.")
    c2.download_button("Weights (CSV)", lambda: result.weights_frame().to_csv(index=False).encode(),
                       "shift_weights.csv", "text/csv", key="shift_dl_weights", on_click="ignore",
                       help="Every source row's weight under all mechanisms and under each one.")
    c3.download_button("Summary (JSON)", lambda: result.to_json().encode(), "shift_attribution.json", "application/json",
                       key="shift_dl_json", on_click="ignore", help="The request, the attributions, intervals and diagnostics.")
    with c4:
        importance_store.keep_control(
            result.to_importances, key="shift_keep", what="attributions + weights",
            help="Keeps the attributions (one value per mechanism) and the source rows' importance weights (one "
                 "value per sample) as importance distributions, for the Importance page.")
