"""The attribution page's widget groups. The workflow itself is core.attribution.workflow; this module
connects it to widgets, the shared cache and a progress bar, and draws the results with core.viz.attribution."""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

import core.attribution as A
import core.viz.attribution as vz
from core.attribution import workflow
from core.attribution.suite import DEFAULT_METRICS, METRICS, RANDOM_MAP, AttributionResult
from core.attribution.workflow import AttributionRequest
from core.workspace import key_of

from . import importance_store, tables
from . import workspace as wsp
from .cache import shared_figure, shared_run
from .params import param_controls

#: what each metric group measures, for the metrics multiselect
METRIC_GROUPS = {
    "deletion": "deletion AUC (faithfulness)",
    "insertion": "insertion AUC (faithfulness)",
    "sparseness": "sparseness (complexity)",
    "complexity": "entropy (complexity)",
    "localisation": "relevance mass and rank (localisation)",
    "randomisation": "weight randomisation (sanity; re-runs each method)",
    "sensitivity": "max-sensitivity (re-runs each method 5 times)",
}
SATURATE = {0.99: "99th percentile of |value|", 0.999: "99.9th percentile", None: "the largest |value|"}
OUTLINES = {"object": "the object", "marker": "the corner marker", "none": "none"}
SUPPRESSOR = "suppressor"
SUPPRESSOR_CAPTION = (
    "**A suppressor** (Wilming et al., ICML 2023) is a feature with no statistical relation to the label that a model "
    "may still need. In this world half the images show the *next* class's shape, and exactly those carry the corner "
    "marker: the marker says nothing about the class on its own, but together with the drawn shape it tells the "
    "class. A model trained on this world must use the marker, so methods that explain the model (gradients, "
    "Integrated Gradients, occlusion, RISE) put importance on it, and a score against the object mask alone counts "
    "that as a mistake. **The shipped models were not trained on this world** but on the standard one, where the "
    "marker only leans towards even classes (ρ = 0.6) and no second shape is drawn: they predict the drawn shape, so "
    "they get every image with a marker wrong, and whatever importance a method puts on the marker here is what these "
    "models took from the standard world's weak correlation, not the suppressor effect itself. *Attribution on the "
    "corner marker* under **Metrics** shows which methods put importance on it.")


# ---------------------------------------------------------------- the data
def is_shapes(data_spec: dict) -> bool:
    return data_spec.get("kind") == "builtin" and data_spec.get("name") == "shapes"


def choose_data(ws: dict) -> tuple[dict, Any, Any, Any] | None:
    """The workspace (model and data specs) the run explains, its model, data and outputs; None (after a
    message) when the workspace cannot be explained. On the Shapes world a switch swaps the data for its
    suppressor preset (on this page only)."""
    with wsp.guard("The workspace could not be loaded; fix it on the home page") as ok:
        _, model, dataset, outputs = wsp.current()
        workflow.load(wsp.resolver(), ws)  # refuses outputs without a model, saying what to choose
    if not ok[0]:
        return None
    data_spec = ws["data"]
    if is_shapes(data_spec):
        on = st.toggle("Suppressor world: the corner marker becomes a suppressor", value=data_spec.get("shift") == SUPPRESSOR,
                       key="attr_suppressor",
                       help="Explains the Shapes world with the suppressor preset (the workspace's size and seed); the "
                            "other pages keep the workspace's data.")
        st.caption(SUPPRESSOR_CAPTION if on else
                   "A suppressor is a feature with no relation to the label that a model may still need (Wilming et al. "
                   "2023). Switch it on to see the Shapes world where the corner marker is one, and which methods put "
                   "importance on it.")
        want = SUPPRESSOR if on else (None if data_spec.get("shift") == SUPPRESSOR else data_spec.get("shift"))
        if want != data_spec.get("shift"):
            data_spec = {**data_spec, "shift": want}
            with wsp.guard("This data could not be loaded") as ok:
                dataset = wsp.load_data(data_spec)
                outputs = wsp.run_with_progress(ws["model"], data_spec, label="Running the model over the suppressor world")
            if not ok[0]:
                return None
    return {"model": ws["model"], "data": data_spec}, model, dataset, outputs


# ---------------------------------------------------------------- the samples
def _class_name(names: list[str], c: int) -> str:
    return names[c] if 0 <= c < len(names) else ("no class" if c < 0 else str(c))


def sample_picker(run_ws: dict, dataset, outputs, kind: str) -> dict:
    """The sample filter (true class, correct or misclassified), how many samples to draw and the seed, or
    samples picked by hand, and the class to explain; returns the request's sample fields."""
    names = list(dataset.class_names)
    labels = np.asarray(dataset.labels)
    present = [c for c in range(len(names)) if (labels == c).any()]
    c1, c2, c3, c4 = st.columns([2, 2, 1, 1])
    classes = c1.multiselect("Classes (true label)", present, default=[], key="attr_classes",
                             format_func=lambda c: _class_name(names, c), placeholder="all classes",
                             help="Explain only samples of these classes (empty: every class).")
    correctness = c2.radio("Prediction", list(workflow.CORRECTNESS), format_func=workflow.CORRECTNESS.get,
                           horizontal=True, key="attr_correctness",
                           help="Keep the samples the model gets right, or those it gets wrong.")
    top = workflow.MAX_SAMPLES[kind]
    n = int(c3.number_input("Samples", 1, top, workflow.DEFAULT_N_SAMPLES[kind], key=f"attr_n_{kind}",
                            help=f"How many of the samples that pass the filter to explain (at most {top}). The cost "
                                 "grows with it."))
    seed = int(c4.number_input("Seed", 0, 2**31 - 1, 0, key="attr_seed",
                               help="Draws the samples, and seeds the random methods (RISE's masks, SmoothGrad's noise, "
                                    "...) and the random map the metrics compare against."))
    target = st.radio("Explain", list(workflow.TARGETS), format_func=workflow.TARGETS.get, horizontal=True,
                      key="attr_target", help="Which class's score the methods attribute: the model's prediction, or the "
                                              "true class (a misclassified sample then shows what speaks for the truth).")
    fields = {"classes": tuple(classes) if classes else None, "correctness": correctness, "n_samples": n, "seed": seed,
              "target": target, "indices": None}
    if st.toggle("Pick the samples by hand", False, key="attr_pick"):
        draft = AttributionRequest(run_ws, {}, **{**fields, "indices": None})
        with wsp.guard("The filter could not be applied") as ok:
            cands = workflow.candidates(wsp.resolver(), draft)
        if ok[0]:
            preds = np.asarray(outputs.preds)

            def label(i: int) -> str:
                y, p = int(labels[i]), int(preds[i])
                return f"#{i} · {_class_name(names, y)} → {_class_name(names, p)}" + (" ✓" if y == p else " ✗")

            picked = st.multiselect("Samples", [int(i) for i in cands[:2000]], default=[], key="attr_picked",
                                    format_func=label, max_selections=top,
                                    help="Rows of the data that pass the filter above (the first 2,000).")
            if picked:
                fields["indices"] = tuple(sorted(picked))
            else:
                st.caption("No sample picked: the run draws them as set above.")
    return fields


def preview(request: AttributionRequest, dataset) -> None:
    """The samples the request explains: thumbnails with class and prediction, or the table rows."""
    with wsp.guard("No samples to explain") as ok:
        idx = workflow.sample_indices(wsp.resolver(), request)
    if not ok[0]:
        return
    names = list(dataset.class_names)
    if dataset.images is not None:
        shown = idx[:16]
        st.image([dataset.images[i] for i in shown], width=72,
                 caption=[f"#{i} {_class_name(names, int(dataset.labels[i]))}" for i in shown])
        if len(idx) > len(shown):
            st.caption(f"… and {len(idx) - len(shown)} more.")
    else:
        cols = list(dataset.feature_names)
        frame = dataset.frame.iloc[idx][cols].copy()
        frame.insert(0, "class", [_class_name(names, int(dataset.labels[i])) for i in idx])
        frame.index = [f"#{i}" for i in idx]
        st.dataframe(frame, height=min(300, 38 + 35 * len(frame)), width="stretch")


# ---------------------------------------------------------------- methods and metrics
def choose_methods(model, kind: str) -> list[str]:
    """The methods multiselect: those that apply to ``model`` (the others named with the reason); the
    defaults leave out slow methods, saying why, or run them at reduced settings, saying so."""
    reasons = workflow.usable(model)
    usable = [m for m, r in reasons.items() if r is None]
    default = [m for m in workflow.default_methods(model, kind) if m in usable]
    chosen = st.multiselect("Methods", usable, default=default, key=f"attr_methods_{kind}_" + "-".join(usable),
                            format_func=lambda m: f"{A.spec(m).name} ({A.spec(m).group})"
                            + (" · slow" if A.spec(m).slow and m not in workflow.REDUCED_DEFAULTS else ""),
                            help="Gradient methods read the model's gradients; perturbation methods only its outputs; "
                                 "Grad-CAM a spatial feature map; attention rollout a ViT's attention.")
    notes = []
    for m in usable:
        s = A.spec(m)
        if s.slow and m in default and m in workflow.REDUCED_DEFAULTS:
            notes.append(f":material/hourglass: {s.name} is slow at its own defaults ({s.slow}); "
                         f"{workflow.REDUCED_DEFAULTS[m]}.")
        elif s.slow and m not in default:
            notes.append(f":material/hourglass: {s.name} is left out by default because it needs {s.slow}; add it "
                         "above to run it.")
    hidden = [":material/block: " + (r if r.startswith(A.spec(m).name) else f"{A.spec(m).name}: {r}")
              for m, r in reasons.items() if r]
    if notes:
        st.caption("  \n".join(notes))
    if hidden:
        st.caption("**Not offered for this model:**  \n" + "  \n".join(hidden))
    return chosen


def method_parameters(model, methods: list[str], kind: str) -> dict[str, dict]:
    """Every chosen method's parameters from its spec (the default run's settings as defaults; the seed is
    the run's), as the entries that differ from the spec's defaults."""
    out: dict[str, dict] = {}
    start = workflow.DEFAULT_METHODS[kind]
    with st.popover("Method parameters", icon=":material/tune:"):
        tabs = st.tabs([A.spec(m).name for m in methods]) if methods else []
        for tab, m in zip(tabs, methods):
            s = A.spec(m)
            shown = tuple(dataclasses.replace(p, default=start.get(m, {}).get(p.name, p.default))
                          for p in s.params if p.name != "seed")
            with tab:
                st.caption(s.reference)
                values = param_controls(dataclasses.replace(s, params=shown), f"attr_param_{m}_",
                                        A.param_bounds(m, model))
                if not shown:
                    st.caption("This method has no parameters.")
                elif any(p.name == "seed" for p in s.params):
                    st.caption("Its random draws use the run's seed (above).")
            out[m] = workflow.compact_params(m, values)
    return out


def metric_controls(model, dataset) -> tuple[str, ...]:
    """The metric groups multiselect; groups that cannot apply (localisation without masks, randomisation of a
    model that is not torch) are left out with the reason."""
    reasons = workflow.metric_reasons(model, dataset)
    offered = [g for g in METRICS if reasons[g] is None]
    why = [r for r in reasons.values() if r]
    chosen = st.multiselect("Metrics", offered, default=[g for g in DEFAULT_METRICS if g in offered],
                            key="attr_metrics_" + "-".join(offered), format_func=METRIC_GROUPS.get,
                            help="The first five are cheap (deletion and insertion run the model once per step of their "
                                 "curves); randomisation and sensitivity re-run every method.")
    if why:
        st.caption("Not offered: " + "; ".join(why) + ".")
    return tuple(g for g in METRICS if g in chosen)


# ---------------------------------------------------------------- cost and running
def _estimate(request: AttributionRequest) -> workflow.RunEstimate:
    ws = request.workspace
    per_pass = shared_figure(("attr-pass-seconds", key_of(ws)), "seconds", lambda: workflow.pass_seconds(
        wsp.resolver(), ws))
    return shared_figure(("attr-estimate", request.fingerprint), "estimate", lambda: workflow.estimate(
        wsp.resolver(), request, per_pass))


def cost_gate(request: AttributionRequest) -> bool:
    """The estimated work of ``request`` before it runs (forward passes, and seconds at this server's measured
    speed); above :data:`~core.attribution.workflow.CONFIRM_SECONDS` a box must be ticked. Returns whether
    the run may start."""
    if not request.methods:
        return False
    with wsp.guard("The run cannot start") as ok:
        est = _estimate(request)
    if not ok[0]:
        return False
    per_method = ", ".join(f"{workflow.method_label(m)} {p.equivalent:,}" for m, p in est.passes.items() if p.equivalent)
    seconds = est.seconds
    text = (f"Estimated work: **{est.equivalent:,} forward passes** on {len(est.indices)} sample"
            f"{'s' if len(est.indices) != 1 else ''} (a backward pass counts as two; {per_method})"
            + (f", about **{_duration(seconds)}** of compute at this server's measured speed" if seconds is not None else "")
            + ".")
    if not est.needs_confirmation:
        st.caption(text)
        return True
    st.warning(text + f" That is more than {workflow.CONFIRM_SECONDS:.0f} s: other users of this server wait while it "
               "runs. Fewer samples, fewer methods or lighter settings make it shorter.", icon=":material/hourglass:")
    return st.checkbox("Run it anyway", False, key="attr_confirm")


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def run(request: AttributionRequest) -> AttributionResult:
    """The attribution run of ``request`` (core.attribution.workflow.evaluate) behind a progress bar.

    The result is shared through the results cache under the request's fingerprint: sessions that press
    Run with the same settings at the same time wait for one computation and get the same (read-only)
    result; every method's maps and metrics are cached there too."""
    return shared_run("attribution", request, workflow.evaluate, "Attribution")


# ---------------------------------------------------------------- showing
def _rkey(result: AttributionResult) -> str:
    return result.fingerprint


def _labelled(result: AttributionResult, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {workflow.method_label(m): v for m, v in values.items()}


def messages(result: AttributionResult) -> None:
    """Methods that did not run, and NaN attributions: which method, how many samples (not drawn)."""
    for m, msg in result.errors.items():
        name = workflow.method_label(m)
        st.warning(f"{name} did not run: {msg.removeprefix(name + ': ')}", icon=":material/warning:")
    n = len(result.indices)
    for m, bad in result.nan_samples.items():
        if bad.any():
            rows = ", ".join(f"#{int(i)}" for i in result.indices[bad][:12])
            st.warning(f"{workflow.method_label(m)} gave NaN or infinite attributions on {int(bad.sum())} of {n} "
                       f"samples ({rows}): those maps are not drawn and get no metrics.", icon=":material/warning:")


def headline(result: AttributionResult) -> None:
    c = st.columns(4)
    c[0].metric("Samples", f"{len(result.indices)}")
    if result.labels is not None and (np.asarray(result.labels) >= 0).any():
        ok = np.asarray(result.labels) >= 0
        c[1].metric("Predicted right", f"{int((result.preds[ok] == result.labels[ok]).sum())} of {int(ok.sum())}")
    c[2].metric("Mean probability of the target", f"{float(np.mean(result.target_probability)):.2f}")
    best = [workflow.method_label(m) for m in result.best_methods()]
    if best:
        c[3].metric("Best mean rank", best[0], delta=f"tied with {', '.join(best[1:])}" if len(best) > 1 else None,
                    delta_color="off", delta_arrow="off",
                    help="Ranked over every metric computed (each metric's direction: lower deletion AUC, higher "
                         "insertion AUC, ...); see Metrics.")


def heatmaps_view(result: AttributionResult) -> None:
    c1, c2, c3, c4 = st.columns([1, 1, 1, 1])
    per_method = c1.toggle("Normalise each method", True, key="attr_norm",
                           help="On: each method divided by its own scale, so the shapes of the maps compare. Off: "
                                "every map on one colour scale, so the methods' magnitudes compare (they differ by "
                                "orders of magnitude: logit gradients, probabilities, activations).")
    options = ["object"] * (result.masks is not None) + ["marker"] * ("marker" in result.region_masks) + ["none"]
    outline = c2.radio("Outline", options, format_func=OUTLINES.get, horizontal=True, key="attr_outline",
                       help="Draws the ground-truth region's outline on every map (the Shapes world's masks).")
    saturate = c3.selectbox("Colours end at", list(SATURATE), format_func=SATURATE.get, key="attr_saturate",
                            help="Gradient maps are spiky: a few pixels far above the rest would leave every other "
                                 "pixel pale. Values beyond this quantile of |value| take the end colour.")
    opacity = c4.slider("Map opacity", 0.2, 1.0, 0.85, 0.05, key="attr_opacity",
                        help="Colours fade to transparent towards 0, so the image shows where a map is near 0.")
    masks = (result.masks if outline == "object" else result.region_masks.get("marker") if outline == "marker"
             else None)
    normalise = "per-method" if per_method else "shared"
    fig = shared_figure(_rkey(result), "grid", lambda: vz.heatmap_grid(
        _labelled(result, {m: result.pixel_map(m) for m in result.methods}), images=result.images,
        normalise=normalise, sample_titles=workflow.sample_titles(result), outlines=masks, opacity=opacity,
        nan_samples=_labelled(result, result.nan_samples), saturate=saturate, fade=True,
        title="Attribution maps" + (" (each method on its own scale)" if per_method else " (one shared colour scale)")),
        normalise, outline, opacity, saturate)
    st.plotly_chart(fig, width="stretch", key="attr_grid")
    st.caption("One row per sample (its row in the data and the class explained; ✓ the model predicts the true class, "
               "✗ it predicts another), one column per method; the channels are summed to one value per pixel. Red is "
               "evidence for the class explained, blue against it; where a map is near 0 the image shows through. "
               "Saliency and Grad-CAM are ≥ 0 by construction; with only such maps the scale runs from transparent to "
               "yellow. Maps with NaN are left empty with a note.")


def distributions_view(result: AttributionResult) -> None:
    norm = st.toggle("One panel, each method divided by its largest |value|", False, key="attr_hist_norm")
    fig = shared_figure(_rkey(result), "hist", lambda: vz.value_histograms(
        _labelled(result, {m: result.pixel_map(m) for m in result.methods}), normalise=norm,
        title="Attribution values per method" + (" (normalised)" if norm else "")), norm)
    st.plotly_chart(fig, width="stretch", key="attr_hist")
    st.caption("The distribution of every pixel's (or feature's) attribution over the samples; values beyond the "
               "0.1% and 99.9% quantiles are gathered at the ends. A sparse method piles most values near 0.")


def _formats(table: pd.DataFrame) -> dict[str, str]:
    num = [c for c in table.columns if c != "method"]
    fmt = {c: "{:.3f}" for c in num}
    fmt.update({c: "{:.0f}" for c in num if c.startswith("rank:") or c in ("samples with NaN", "passes")})
    fmt.update({"mean rank": "{:.2f}", "seconds": "{:.2f}"})
    return {k: v for k, v in fmt.items() if k in table.columns}


def metrics_view(result: AttributionResult) -> None:
    if not result.metric_columns:
        st.info("No metric was computed; choose some under **Metrics** and run again.")
    else:
        table = shared_figure(_rkey(result), "summary", lambda: workflow.summary_table(result))
        keep = [c for c in table.columns if not c.startswith("rank:")]
        tables.show(table[keep], _formats(table[keep]))
        ranking = [workflow.method_label(m) for m in result.ranking()]
        st.markdown("**Ranking** (mean rank over the metrics, best first): " + " · ".join(
            f"{k + 1}. {name}" for k, name in enumerate(ranking)))
        base = "" if result.baseline.empty else (
            " The last row is a random map: every method should beat it on faithfulness and localisation; its "
            "relevance mass and rank accuracy are the object's area share (their expectation).")
        st.caption("Means over the samples with a finite map. Deletion AUC: the target's probability as the most "
                   "relevant pixels are removed first (lower is better); insertion AUC: as they are added to a blurred "
                   "image (higher is better). Sparseness is the Gini index of |map| (higher: fewer pixels carry the "
                   "importance); complexity its entropy (lower is simpler). Relevance mass accuracy is the share of the "
                   "positive relevance on the object; rank accuracy the share of the object's size in top pixels that lie "
                   "on it." + base + " Seconds and passes are the method's own (without its metrics).")
        with st.expander("Per-sample metrics and ranks"):
            ranks = table[["method"] + [c for c in table.columns if c.startswith("rank:")]]
            tables.show(ranks, _formats(ranks))
            st.dataframe(workflow.metrics_frame(result).assign(method=lambda d: d["method"].map(workflow.method_label)),
                         hide_index=True, width="stretch")
    marker = shared_figure(_rkey(result), "marker", lambda: workflow.region_table(result))
    if "marker" in result.region_masks:
        st.markdown("**Attribution on the corner marker**")
        if marker.empty:
            st.info("None of these samples shows the corner marker; pick more samples (or, in the suppressor world, "
                    "misclassified ones: exactly those carry it).")
        else:
            shown = marker.assign(method=marker["method"].map(workflow.method_label)).rename(columns={
                "images": "images with the marker", "share_abs": "share of |attribution|",
                "share_positive": "share of positive attribution", "area_share": "marker's area (random map)",
                "ratio": "× the random map"})
            tables.show(shown, {"share of |attribution|": "{:.2%}", "share of positive attribution": "{:.2%}",
                                "marker's area (random map)": "{:.2%}", "× the random map": "{:.1f}"})
            suppressor = (result.request is not None
                          and result.request.workspace["data"].get("shift") == SUPPRESSOR)
            st.caption(("In the suppressor world the marker carries no class information, yet a model trained there "
                        "needs it; the shipped models were trained on the standard world, so this shows what they "
                        "took from its weak marker correlation. " if suppressor else
                        "In the standard world the marker is a weak class signal (shown more often for even classes, "
                        "ρ = 0.6). ")
                       + "A method that gives the marker more than its area share (× > 1) puts importance on it.")


def curves_view(result: AttributionResult) -> None:
    c1, c2 = st.columns(2)
    unit = "pixels" if result.kind == "image" else "features"
    for col, kind, text in ((c1, "deletion", "removed, most relevant first"), (c2, "insertion", "inserted, most relevant first")):
        curves = {workflow.method_label(m): c[kind] for m, c in result.curves.items() if kind in c}
        with col:
            if not curves:
                st.info(f"The {kind} curve was not computed; add it under **Metrics**.")
                continue
            st.plotly_chart(shared_figure(_rkey(result), f"curve-{kind}", lambda curves=curves, kind=kind, text=text:
                                          vz.perturbation_curves(curves, title=f"{kind.capitalize()}: {unit} {text}")),
                            width="stretch", key=f"attr_curve_{kind}")
    st.caption("The mean over the samples (band: interquartile range) of the target's probability as the "
               f"{unit} are changed in the order each method ranks them; the random map orders them at random. "
               + ("Deleted pixels become 0 (the normalised mean colour); insertion starts from a blurred image."
                  if result.kind == "image" else "Removed features take the background mean."))


def sample_view(result: AttributionResult) -> None:
    """One table row's attributions per feature, grouped by method."""
    names = result.class_names
    k = st.selectbox("Row", list(range(len(result.indices))), key="attr_row",
                     format_func=lambda k: (f"#{int(result.indices[k])} · explains {_class_name(names, int(result.targets[k]))}"
                                            f" · predicted {_class_name(names, int(result.preds[k]))}"))
    drawn = {m: result.maps[m][k] for m in result.methods if not result.nan_samples[m][k]}
    skipped = [workflow.method_label(m) for m in result.methods if result.nan_samples[m][k]]
    if skipped:
        st.caption(f"Not drawn (NaN on this row): {', '.join(skipped)}.")
    if drawn:
        fig = shared_figure(_rkey(result), "bars", lambda: vz.sample_bars(
            _labelled(result, drawn), result.feature_names, top_k=20,
            title=f"Row #{int(result.indices[k])}: attribution per feature "
                  f"(p = {float(result.target_probability[k]):.2f} for the class explained)"), k)
        st.plotly_chart(fig, width="stretch", key="attr_bars")
    st.caption("The strongest features (at most 20) by their largest |attribution| over the methods. Positive values "
               "speak for the class explained, negative against it. Table methods explain the predicted "
               "probability, measured against the background rows (the model's training rows).")
    if result.rows is not None:
        st.dataframe(pd.DataFrame([result.rows[k]], columns=result.feature_names), hide_index=True, width="stretch")


def global_view(result: AttributionResult) -> None:
    norm = st.toggle("Share of each method's total", True, key="attr_global_norm",
                     help="Divide each method's bars by their sum, so methods on different scales share an axis.")
    fig = shared_figure(_rkey(result), "global", lambda: vz.global_importance(
        _labelled(result, result.maps), result.feature_names, top_k=20, normalise=norm,
        title=f"Global importance: mean |attribution| over {len(result.indices)} rows"), norm)
    st.plotly_chart(fig, width="stretch", key="attr_global")
    st.caption("Per feature, the mean |attribution| over the rows explained (rows with NaN left out); the 20 strongest.")


def export(result: AttributionResult) -> None:
    c1, c2, c3, c4 = st.columns(4)
    c1.download_button("Attributions (.npz)", lambda: workflow.attributions_npz(result), "attributions.npz",
                       "application/octet-stream", key="attr_dl_npz", on_click="ignore", icon=":material/download:",
                       help="The maps shaped like the model input (images keep their channels), with the samples, "
                            "targets and predictions.")
    c2.download_button("Attributions (CSV)", lambda: workflow.attributions_frame(result).to_csv(index=False).encode(),
                       "attributions.csv", "text/csv", key="attr_dl_csv", on_click="ignore", icon=":material/download:",
                       help="One row per method, sample and pixel (channels summed) or feature.")
    c3.download_button("Metrics (CSV)", lambda: workflow.metrics_frame(result).to_csv(index=False).encode(),
                       "attribution_metrics.csv", "text/csv", key="attr_dl_metrics", on_click="ignore",
                       icon=":material/download:", help="Every metric per method and sample, the random map's rows last.")
    with c4:
        importance_store.keep_control(
            lambda: {f"Attribution · {workflow.method_label(m)}": imp for m, imp in result.to_importances().items()},
            key="attr_keep", what="the attributions",
            help=f"Keeps every method's attributions (unit '{result.unit}', one map per sample) as importance "
                 "distributions, for the Importance page.")
    st.caption("Every chart's camera icon (top right, on hover) saves it as a PNG.")


def views(result: AttributionResult) -> None:
    if result.kind == "image":
        tabs = st.tabs(["Heatmaps", "Distributions", "Metrics", "Curves"])
        for tab, view in zip(tabs, (heatmaps_view, distributions_view, metrics_view, curves_view)):
            with tab:
                view(result)
    else:
        tabs = st.tabs(["Per sample", "Global importance", "Distributions", "Metrics", "Curves"])
        for tab, view in zip(tabs, (sample_view, global_view, distributions_view, metrics_view, curves_view)):
            with tab:
                view(result)


__all__ = ["RANDOM_MAP", "choose_data", "choose_methods", "cost_gate", "export", "headline", "messages",
           "method_parameters", "metric_controls", "preview", "run", "sample_picker", "views"]
