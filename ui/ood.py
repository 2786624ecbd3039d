"""The OOD page's widget groups. The workflow itself is core.ood.workflow; this module connects
it to widgets, the shared cache and a progress bar, and draws the results."""
from __future__ import annotations

import numpy as np
import streamlit as st

import core.ood as ood
import core.viz as viz
from core.ood import workflow
from core.ood.suite import SuiteResult, extremes, flagged_counts, per_class
from core.ood.workflow import OODRequest

from . import importance_store, tables
from . import workspace as wsp
from .cache import shared_figure, shared_run
from .params import param_controls as spec_controls

GROUP_LABELS = {"near": "near-OOD", "shift": "covariate shift", "far": "far-OOD", "upload": "uploaded"}

#: the ID set choices of the page ({} is the workspace's data)
ID_CHOICES = {"workspace": "the workspace's data ({})", "upload": "your own upload"}


def candidate_sets(ws: dict) -> dict[str, dict]:
    """OOD sets offered for the workspace's data (core.ood.workflow.candidate_sets)."""
    return workflow.candidate_sets(wsp.resolver(), ws)


def id_upload_spec(filename: str, content: bytes, workspace_data) -> dict:
    return workflow.id_upload_spec(wsp.resolver(), filename, content, workspace_data)


# ---------------------------------------------------------------- parameters
def param_controls(det: str, caps: dict[str, int] | None = None) -> dict:
    """Streamlit controls for a detector's parameters, built from its spec. ``caps`` lowers the upper
    bound of parameters that the data limits (``core.ood.param_bounds``: ViM's ``dim`` below D)."""
    return spec_controls(ood.spec(det), f"ood_param_{det}_", caps)


def parameter_editor(detectors: list[str], outputs) -> dict[str, dict]:
    """Each chosen detector's parameters, edited one detector at a time in a popover.

    Only the picked detector's controls are drawn: drawing every detector's (about 50 widgets for the
    default 24) cost each session some 50 ms of server CPU on every run. The values set for a detector
    are kept in the session while another one is picked, and start its controls when it is picked again."""
    kept = st.session_state.setdefault("ood_params", {})
    with st.popover("Detector parameters"):
        if detectors:
            d = st.selectbox("Detector", detectors, format_func=lambda x: ood.spec(x).name, key="ood_param_detector")
            spec = ood.spec(d)
            st.caption(spec.reference)
            # bounds the data sets come from the spec (ViM's dim < D)
            kept[d] = spec_controls(spec, f"ood_param_{d}_", ood.param_bounds(d, outputs), kept.get(d))
            if not spec.params:
                st.caption("This detector has no parameters.")
            changed = [ood.spec(x).name for x in detectors if kept.get(x, ood.spec(x).defaults) != ood.spec(x).defaults]
            if changed:
                st.caption(f"Changed from their defaults: {', '.join(changed)}.")
    return {d: dict(kept.get(d, ood.spec(d).defaults)) for d in detectors}


# ---------------------------------------------------------------- running
def run(request: OODRequest) -> SuiteResult:
    """The OOD run of ``request`` (core.ood.workflow.evaluate) behind a progress bar.

    The whole result is shared through the results cache under the request's fingerprint: sessions
    that press Run with the same settings at the same time wait for one computation and get the same
    (read-only) result; each fitted detector and each set's scores are cached there too."""
    result = shared_run("ood", request, workflow.evaluate, "Running the detectors")
    if result.convention != request.convention:  # the same scores under the other FPR convention
        result = result.with_convention(request.convention)
    return result


# ---------------------------------------------------------------- showing
TABLE_METRICS = {"auroc": "AUROC", "aupr_in": "AUPR-In", "aupr_out": "AUPR-Out", "fpr95": "FPR@95"}


def summary_labels(cols: list[str]) -> dict:
    """Readable headers for the summary table (the data and the CSV keep the snake_case names)."""
    fixed = {"detector": ("id", "The detector's id in core.ood"), "name": ("detector", None),
             "sets": ("sets", "How many OOD sets the detector scored"),
             "fit_s": ("fit s", "Seconds to fit"), "score_s": ("score s", "Seconds to score every set")}
    config = {}
    for c in cols:
        if c in fixed:
            label, help_ = fixed[c]
        else:
            key, _, group = c.rpartition("_")
            label = f"{TABLE_METRICS.get(key, key)} {'mean' if group == 'mean' else group}"
            help_ = ("Mean over the OOD sets" if group == "mean" else f"Mean over the {group} OOD sets") + \
                (" (lower is better)" if key == "fpr95" else " (higher is better)")
        if c in ("detector", "name"):
            config[c] = st.column_config.Column(label, help=help_)
        else:
            config[c] = st.column_config.NumberColumn(label, help=help_, format="%d" if c == "sets" else "%.3f")
    return config


def best_values(summary, cols: list[str]) -> str:
    """"AUROC mean 0.953 (ViM) · ...": the best value of each mean metric column and whose it is (highest
    AUROC and AUPR, lowest FPR@95)."""
    parts = []
    for c in cols:
        key, _, group = c.rpartition("_")
        if group != "mean" or key not in TABLE_METRICS or summary[c].isna().all():
            continue
        i = summary[c].idxmin() if key == "fpr95" else summary[c].idxmax()
        parts.append(f"{TABLE_METRICS[key]} {summary.at[i, c]:.3f} ({summary.at[i, 'name']})")
    return " · ".join(parts)


def results_table(result: SuiteResult) -> None:
    summary = result.summary()
    if summary.empty:
        st.warning("No detector produced scores.")
        return
    left_out = summary.attrs.get("left_out", {})
    summary.insert(1, "name", [ood.spec(d).name for d in summary["detector"]])
    metric = st.radio("Group averages of", list(TABLE_METRICS), horizontal=True, key="ood_table_metric",
                      format_func=TABLE_METRICS.get,
                      help="The table shows every metric's mean over all OOD sets, and this metric's mean over each "
                           "group of sets (near, far, shift, …; each set in a group counts equally).")
    groups = [c for c in summary.columns if c.startswith(f"{metric}_") and c != f"{metric}_mean"]
    cols = ["detector", "name", f"{metric}_mean", *groups,
            *[f"{k}_mean" for k in TABLE_METRICS if k != metric], "sets", "fit_s", "score_s"]
    summary = summary[cols].sort_values(f"{metric}_mean", ascending=metric == "fpr95", kind="stable")
    # column formats, not a pandas Styler: drawn by the browser instead of re-rendered for every session
    st.dataframe(summary, width="stretch", hide_index=True, column_config=summary_labels(cols))
    best = best_values(summary, cols)
    if left_out:
        missed = "; ".join(f"'{name}' (not scored by {', '.join(ood.spec(d).name for d in dets)})"
                           for name, dets in left_out.items())
        st.warning(f"The means cover only the OOD sets that every detector scored, so that the ranking compares "
                   f"like with like. Left out: {missed}. The per-set table below has their values.")
    st.caption("Sorted by the chosen metric's mean over the OOD sets (best first)"
               + (f"; the best means: {best}" if best else "") + ". Click a column header to sort. sets is the number "
               "of OOD sets the detector scored; fit s and score s are seconds for fitting and for scoring every set. "
               f"FPR@95 follows the {result.convention} convention. The summary CSV below has every metric per group.")
    with st.expander("Every detector on every OOD set"):
        tables.show(result.table, precision=3)


def assumption_warning(result: SuiteResult) -> str | None:
    """One sentence naming the detectors whose declared assumptions the ID data breaks (None if none)."""
    id_out = result_id_outputs(result)
    broken = [d for d in result.detectors if ood.assumption_notes(d, id_out)]
    if not broken:
        return None
    share = float((id_out.features < 0).mean())
    names = ", ".join(ood.spec(d).name for d in broken)
    return (f"**{names}** were designed for non-negative (post-ReLU, CNN-like) features, but {share:.0%} of this "
            "model's ID feature values are negative (as a transformer's pre-logits are). Their scores can rank ID "
            "samples below OOD ones: a mismatch of method and model, not a failure of the model.")


def fitted_facts(result: SuiteResult, det: str) -> str:
    """Markdown lines with the parameters used and what the detector learnt on fitting (e.g. TempScale's T)."""
    lines = []
    params = result.params.get(det) or {}
    if params:
        lines.append("**Parameters:** " + ", ".join(f"{k} = {_fmt(v)}" for k, v in params.items()))
    info = dict(result.info.get(det) or {})
    where = info.pop("fitted on", None)
    if where:
        lines.append(f"**Fitted on:** {where}")
    if info:
        lines.append("**Fitted values:** " + ", ".join(f"{k} = {_fmt(v)}" for k, v in info.items()))
    return "  \n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return "auto"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(map(str, v)) + "]" if v else "none"
    return str(v)


def _rkey(result: SuiteResult) -> tuple:
    """What identifies a result's figures: its request and the FPR convention (the same for every session)."""
    return (result.fingerprint or id(result), result.convention)


def auroc_heatmap(result: SuiteResult):
    return shared_figure(_rkey(result), "auroc", lambda: workflow.auroc_heatmap(result))


def roc_figure(result: SuiteResult, det: str, target: str | None):
    """ROC curves of ``det`` on every OOD set (``target`` None), or of every detector on ``target``."""
    scores = result.scores[det]
    if target is None:
        curves = {s: ood.roc_curve(scores["ID"], v, convention=result.convention, max_points=500)[:2]
                  for s, v in scores.items() if s != "ID"}
        title = f"ROC of {ood.spec(det).name}"
    else:
        curves = {ood.spec(d).name: ood.roc_curve(result.scores[d]["ID"], result.scores[d][target],
                                                  convention=result.convention, max_points=500)[:2]
                  for d in result.detectors if target in result.scores[d]}
        title = f"ROC on {target}"
    axes = (("share of ID flagged (FPR)", "share of OOD caught (TPR)") if result.convention == "ood-positive"
            else ("share of OOD accepted (FPR)", "share of ID accepted (TPR)"))
    return viz.roc_curves(curves, title=title, xaxis=axes[0], yaxis=axes[1],
                          highlight=None if target is None else ood.spec(det).name)


def distribution_tabs(result: SuiteResult, ws: dict, images_of) -> None:
    # keep the detector in view across runs while it is still among the results
    if st.session_state.get("ood_view_det") not in result.detectors:
        last = st.session_state.get("ood_view_last")
        st.session_state["ood_view_det"] = last if last in result.detectors else result.detectors[0]
    det = st.selectbox("Detector", result.detectors, format_func=lambda d: ood.spec(d).name, key="ood_view_det")
    st.session_state["ood_view_last"] = det
    scores = result.scores[det]
    tabs = st.tabs(["Score distributions", "ROC curves", "Threshold", "Per class", "Gallery"])
    with tabs[0]:
        kind = st.radio("Plot", ["histogram", "ecdf"], horizontal=True, key="ood_hist_kind")
        st.plotly_chart(shared_figure(_rkey(result), "scores", lambda: viz.score_distributions(
            scores, kind=kind, title=f"{ood.spec(det).name} scores (higher = more in-distribution)"), det, kind),
            width="stretch")
        with st.expander("What this detector computes"):
            st.markdown(ood.spec(det).description)
            st.caption(ood.spec(det).reference)
            fitted = fitted_facts(result, det)
            if fitted:
                st.markdown(fitted)
            for note in ood.assumption_notes(det, result_id_outputs(result)):
                st.warning(note, icon=":material/warning:")
    with tabs[1]:
        compare = st.radio("Compare", ["this detector on every OOD set", "every detector on one OOD set"],
                           horizontal=True, key="ood_roc_mode")
        target = None
        if not compare.startswith("this"):
            ood_sets = [s for s in scores if s != "ID"]
            target = st.selectbox("OOD set", ood_sets, key="ood_roc_set")
        st.plotly_chart(shared_figure(_rkey(result), "roc", lambda: roc_figure(result, det, target), det, target),
                        width="stretch")
    with tabs[2]:
        allv = np.concatenate(list(scores.values()))
        lo, hi = float(np.quantile(allv, 0.001)), float(np.quantile(allv, 0.999))
        default = float(np.quantile(scores["ID"], 0.05))
        if not hi > lo:
            hi = lo + 1.0
        thr = st.slider("Threshold: samples scoring at or below it are flagged as OOD", lo, hi,
                        min(max(default, lo), hi), step=(hi - lo) / 1000, key=f"ood_thr_{det}", format="%.4g")
        st.plotly_chart(shared_figure(_rkey(result), "threshold",
                                      lambda: viz.score_distributions(scores, threshold=thr), det, thr), width="stretch")
        tables.show(flagged_counts(scores, thr), {"share flagged": "{:.1%}"})
        st.caption("The default threshold keeps 95% of the ID samples.")
    with tabs[3]:
        eval_out = result_id_outputs(result)
        if eval_out is None or eval_out.labels is None or not (eval_out.labels >= 0).any():
            st.info("The ID set has no labels, so there is no per-class breakdown.")
        else:
            ood_sets = [s for s in scores if s != "ID"]
            target = st.selectbox("Against", ["all OOD sets pooled"] + ood_sets, key="ood_pc_set")
            s_ood = (np.concatenate([scores[s] for s in ood_sets]) if target == "all OOD sets pooled" else scores[target])
            names = eval_out.class_names or [str(k) for k in range(eval_out.num_classes)]
            table = per_class(scores["ID"], eval_out.labels, names, s_ood, convention=result.convention)
            st.plotly_chart(shared_figure(_rkey(result), "per-class", lambda: viz.grouped_bars(
                {"AUROC": dict(zip(table["class"], table["auroc"]))}, title="AUROC of each ID class against the OOD "
                "scores", yaxis="AUROC", yrange=(0, 1)), det, target), width="stretch")
            tables.show(table, precision=3)
    with tabs[4]:
        most, least = extremes(scores, k=8)
        fmt = score_format([v for _, _, v in most + least])
        for title, items in (("Most OOD-looking (lowest scores)", most), ("Most in-distribution-looking (highest scores)", least)):
            st.markdown(f"**{title}**")
            cols = st.columns(8)
            for col, (set_name, i, v) in zip(cols, items):
                img = images_of(set_name, i)
                with col:
                    if img is not None:
                        st.image(img, caption=f"{set_name} · {v:{fmt}}", width="stretch")
                    else:
                        st.caption(f"{set_name} #{i} · {v:{fmt}}")


def score_format(values) -> str:
    """One number format for a group of scores: three significant digits of the largest magnitude,
    the same number of decimals for all (so 0.170 and 0.169 line up)."""
    v = np.abs(np.asarray(values, np.float64))
    v = v[np.isfinite(v) & (v > 0)]
    if not len(v):
        return ".3f"
    return f".{int(np.clip(2 - np.floor(np.log10(v.max())), 0, 8))}f"


def result_id_outputs(result: SuiteResult):
    return result.id_outputs


def scores_csv(result: SuiteResult) -> bytes:
    return result.scores_csv()


def export(result: SuiteResult, ws: dict) -> None:
    # the files are built when a download is clicked, not on every run of every session
    c1, c2, c4, c3 = st.columns(4)
    c1.download_button("Download scores (CSV)", lambda: scores_csv(result), "ood_scores.csv", "text/csv",
                       key="ood_dl_scores", on_click="ignore", help="One row per detector, set and sample.")
    c2.download_button("Download metrics (CSV)", lambda: result.table.to_csv(index=False).encode(), "ood_metrics.csv",
                       "text/csv", key="ood_dl_metrics", on_click="ignore", help="One row per detector and OOD set.")
    c4.download_button("Download summary (CSV)", lambda: result.summary().to_csv(index=False).encode(),
                       "ood_summary.csv", "text/csv", key="ood_dl_summary", on_click="ignore",
                       help="One row per detector: every metric's mean over all OOD sets and per group, and timings.")
    det = st.session_state.get("ood_view_det") or result.detectors[0]
    name = ood.spec(det).name
    with c3:
        importance_store.keep_control(
            lambda: workflow.to_importances(result, det, ws), key="ood_keep", what=f"{name} scores",
            help=f"Keeps the scores of the detector shown above ({name}) on the ID set and on every OOD set as "
                 "importance distributions (one value per sample), for the Importance page.")
