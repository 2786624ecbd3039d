"""The OOD page's widget groups and its cached workflow."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import streamlit as st

import core.data as data
import core.ood as ood
import core.viz as viz
from core.data import table_ood
from core.extract import ModelOutputs, preprocess
from core.importance import Importance
from core.ood.suite import EvalSet, SuiteResult, extremes, flagged_counts, per_class, run_suite

from . import importance_store
from . import workspace as wsp
from .cache import results_cache

GROUP_LABELS = {"near": "near-OOD", "shift": "covariate shift", "far": "far-OOD", "upload": "uploaded"}
DEFAULT_TABLE_SETS = ["near: table dependency", "near: table local", "far: table global"]
DEFAULT_SETS = ["near: shapes-near-ood", "far: noise", "far: textures", "far: digits", "shift: background", "shift: size"]


# ---------------------------------------------------------------- the sets
def candidate_sets(ws: dict) -> dict[str, dict]:
    """OOD sets offered for the workspace's data: name -> {"group", "spec"}.

    Built-in image sets other than the ID one; the Shapes shift presets count as covariate
    shift when the ID data is the Shapes world.
    """
    ds = ws["data"]
    out: dict[str, dict] = {}
    loaded = wsp.load_data(ds)
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


def fit_and_eval_specs(ws: dict, n_fit: int) -> tuple[dict | None, dict]:
    """(fit spec or None, eval spec). Built-in data fits on its train split; uploads split themselves."""
    ds = ws["data"]
    if ds["kind"] == "builtin":
        n = None if ds["name"] == "digits" or data.kind_of(ds["name"]) == "table" else n_fit
        return {**ds, "split": "train", "n": n, "shift": None}, ds
    return None, ds


#: the ID set choices of the page ({} is the workspace's data)
ID_CHOICES = {"workspace": "the workspace's data ({})", "upload": "your own upload"}


def id_upload_spec(filename: str, content: bytes, workspace_data: data.Dataset) -> dict:
    """The data spec of an uploaded ID evaluation set. A table keeps the workspace's label column when it has
    one (for the per-class breakdown) and is read unlabelled otherwise."""
    options = {}
    if wsp.is_table_file(filename):
        from core.data.uploads import read_table_columns

        columns = read_table_columns(content, filename)[0]
        label = getattr(workspace_data, "label", None)
        # an evaluation set may hold a single class (deployment data of one kind)
        options = {"label": label, "min_classes": 1} if label and label in columns else {"unlabelled": True}
    return wsp.data_upload_spec(filename, content, **options)


#: built-in sets drawn from a generative world: any split name is a fresh, independent stream of samples
GENERATED_WORLDS = ("shapes", "shapes-near-ood")


def validation_spec(ws: dict, n_fit: int) -> dict | None:
    """Held-out ID data for calibrating detectors (TempScale's T, KLM's templates): the Shapes world's "val" split,
    which neither the shipped models' training nor the test split ever draws. None where no such split exists
    (tables and digits have a fixed train/test partition; uploads are split in halves, and the fit half is
    already held out from evaluation)."""
    ds = ws["data"]
    if ds["kind"] == "builtin" and ds["name"] in GENERATED_WORLDS:
        return {**ds, "split": "val", "n": n_fit, "shift": None}
    return None


def split_outputs(out: ModelOutputs, seed: int) -> tuple[ModelOutputs, ModelOutputs, np.ndarray]:
    """Half of an uploaded set for fitting, the other half for evaluation (seeded)."""
    if len(out) < 4:
        raise ood.OODError(f"The ID set has {len(out)} samples; at least 4 are needed to fit and evaluate detectors.")
    perm = np.random.default_rng(seed).permutation(len(out))
    half = len(out) // 2
    return out.subset(perm[:half]), out.subset(perm[half:]), perm[half:]


def input_batches(spec: dict, card: dict, index: np.ndarray | None = None, batch: int = 128):
    """A callable yielding preprocessed image batches of a data spec (for ODIN)."""
    def gen():
        dataset = wsp.load_data(spec)
        images = dataset.images if index is None else dataset.images[index]
        for i in range(0, len(images), batch):
            yield preprocess(images[i:i + batch], card)
    return gen


# ---------------------------------------------------------------- parameters
def param_controls(det: str, caps: dict[str, int] | None = None) -> dict:
    """Streamlit controls for a detector's parameters, built from its spec. ``caps`` lowers the upper
    bound of integer parameters that the data limits (e.g. ViM's ``dim`` below the feature dimension)."""
    s = ood.spec(det)
    caps = caps or {}
    values = {}
    for p in s.params:
        key = f"ood_param_{det}_{p.name}"
        label = f"{p.name}" + (" (blank = automatic)" if p.optional else "")
        if p.type == "bool" and (p.optional or p.default is None):
            # three states: "auto" (None) lets the detector decide from the data, as the API default does
            options = [None, True, False]
            values[p.name] = st.selectbox(p.name, options, index=options.index(p.default), key=key, help=p.help,
                                          format_func=lambda v: {None: "auto", True: "on", False: "off"}[v])
        elif p.type == "bool":
            values[p.name] = st.checkbox(p.name, value=bool(p.default), key=key, help=p.help)
        elif p.type == "choice":
            values[p.name] = st.selectbox(p.name, list(p.choices), index=list(p.choices).index(p.default), key=key,
                                          help=p.help)
        elif p.type == "int":
            high = None if p.high is None else int(p.high)
            if p.name in caps:
                high = caps[p.name] if high is None else min(high, caps[p.name])
            v = st.number_input(label, min_value=int(p.low) if p.low is not None else None, max_value=high,
                                value=None if p.default is None else int(p.default), step=1, key=key, help=p.help)
            values[p.name] = None if v is None else int(v)
        else:
            v = st.number_input(label, min_value=float(p.low) if p.low is not None else None,
                                max_value=float(p.high) if p.high is not None else None,
                                value=None if p.default is None else float(p.default), key=key, help=p.help,
                                format="%.6g")
            values[p.name] = None if v is None else float(v)
    return values


# ---------------------------------------------------------------- running
def class_mismatch(out: ModelOutputs, reference: ModelOutputs) -> str | None:
    """Why ``out`` cannot be outputs of the model that produced ``reference``: another number of
    logits (None when they agree). Features of another width only stop the feature detectors,
    which say so themselves; the logit detectors still score such a set."""
    if out.num_classes == reference.num_classes:
        return None
    return (f"it has {out.num_classes} logits per sample where the model has {reference.num_classes}; "
            "were these outputs produced by a different model?")


def run(ws: dict, set_names: list[str], detectors: dict[str, dict], n_fit: int, convention: str,
        uploads: dict[str, dict] | None = None, id_spec: dict | None = None) -> SuiteResult:
    """Extract outputs (cached), then fit/score the detectors (cached per detector and parameters).

    ``id_spec``: an ID evaluation set other than the workspace's data (an upload). The detectors still
    fit on the model's training data: the train split of built-in data, or all of an uploaded workspace."""
    cands = candidate_sets(ws)
    cands.update(uploads or {})
    fit_spec, eval_spec = fit_and_eval_specs(ws, n_fit)
    if id_spec is not None:
        fit_spec = fit_spec or ws["data"]  # an uploaded workspace: fit on all of it, evaluate on the ID upload
        eval_spec = id_spec
    val_spec = validation_spec(ws, n_fit) if any(ood.spec(d).fit_on == "validation" for d in detectors) else None
    model = wsp.load_model(ws["model"], ws["data"])
    card = getattr(model, "card", {}) if model is not None else {}
    torch_model = model if hasattr(model, "forward") else None
    steps = len(set_names) + 2
    bar = st.progress(0.0, text="Running the model over the sets")
    try:
        eval_out = wsp.run_with_progress(ws["model"], eval_spec, label="ID evaluation set", model_data=ws["data"])
        id_inputs = input_batches(eval_spec, card) if torch_model is not None else None
        if fit_spec is not None:
            fit_out = wsp.run_with_progress(ws["model"], fit_spec, label="ID fit set (train split)",
                                             model_data=ws["data"])
        else:
            fit_out, eval_out, index = split_outputs(eval_out, seed=0)
            id_inputs = input_batches(eval_spec, card, index) if torch_model is not None else None
        val_out = (wsp.run_with_progress(ws["model"], val_spec, label="ID validation set (val split)",
                                         model_data=ws["data"])
                   if val_spec is not None else None)
        bar.progress(1 / steps, text="Running the model over the OOD sets")
        sets = {"ID": EvalSet(eval_out, "id", id_inputs)}
        load_errors = {}
        for i, name in enumerate(set_names):
            c = cands[name]
            try:  # one unusable OOD set must not stop the others
                out = wsp.run_with_progress(ws["model"], c["spec"], label=name, model_data=ws["data"])
            except wsp.USER_ERRORS as e:
                load_errors[name] = f"could not be used: {e}"
                continue
            mismatch = class_mismatch(out, eval_out)
            if mismatch:  # one message for the set, not one per detector
                load_errors[name] = f"could not be used: {mismatch}"
                continue
            inputs = input_batches(c["spec"], card) if (torch_model is not None and c["spec"]["kind"] == "builtin"
                                                       or c.get("images")) else None
            sets[name] = EvalSet(out, c["group"], inputs)
            bar.progress((i + 2) / steps, text=f"Outputs of {name}")
        if len(sets) < 2:
            raise ood.OODError("None of the chosen OOD sets could be used: " + "; ".join(f"{k}: {v}" for k, v in load_errors.items()))
        # a detector is fitted once per (model, fit set, validation set, parameters) and then scores
        # only the sets it has not scored before, so adding an OOD set costs just that set
        base = wsp.key_of({"model": ws["model"], "fit": fit_spec or eval_spec, "validation": val_spec,
                           "split from": None if fit_spec is not None else eval_spec})
        set_keys = {"ID": wsp.key_of({"eval": eval_spec, "index": None if fit_spec is not None else "split"}),
                    **{k: wsp.key_of(cands[k]["spec"]) for k in sets if k != "ID"}}

        def cache_key(det, params):
            return hashlib.sha1(f"{base}|{det}|{json.dumps(params, sort_keys=True)}".encode()).hexdigest()

        def progress(frac, msg):
            bar.progress(min(1.0, (steps - 1 + frac) / steps), text=f"Detectors: {msg}")

        result = run_suite(fit_out, sets, "ID", detectors, model=torch_model, convention=convention,
                           progress=progress, cache=results_cache(), cache_key=cache_key, validation=val_out,
                           set_keys=set_keys)
        result.set_errors.update(load_errors)
        result.meta["id_index"] = None if fit_spec is not None else index
        result.meta["id_outputs"] = eval_out
        result.meta["id_spec"] = eval_spec
        return result
    finally:
        bar.empty()


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
        config[c] = st.column_config.Column(label, help=help_)
    return config


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
    higher = [c for c in cols if c.startswith(("auroc", "aupr"))]
    lower = [c for c in cols if c.startswith("fpr95")]
    styled = (summary.style.format(precision=3, na_rep="—")
              .highlight_max(subset=higher, color="#c6f6d5").highlight_min(subset=lower, color="#c6f6d5"))
    st.dataframe(styled, width="stretch", hide_index=True, column_config=summary_labels(cols))
    if left_out:
        missed = "; ".join(f"'{name}' (not scored by {', '.join(ood.spec(d).name for d in dets)})"
                           for name, dets in left_out.items())
        st.warning(f"The means cover only the OOD sets that every detector scored, so that the ranking compares "
                   f"like with like. Left out: {missed}. The per-set table below has their values.")
    st.caption("Sorted by the chosen metric's mean over the OOD sets (best first); the best value in each column is "
               "highlighted (highest AUROC and AUPR, lowest FPR@95). Click a column header to sort. sets is the number "
               "of OOD sets the detector scored; fit s and score s are seconds for fitting and for scoring every set. "
               f"FPR@95 follows the {result.convention} convention. The summary CSV below has every metric per group.")
    with st.expander("Every detector on every OOD set"):
        st.dataframe(result.table.style.format(precision=3), width="stretch", hide_index=True)


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


def auroc_heatmap(result: SuiteResult):
    t = result.table
    dets = list(result.summary()["detector"])
    sets = list(dict.fromkeys(t["ood_set"]))
    z = np.full((len(dets), len(sets)), np.nan)
    for _, r in t.iterrows():
        z[dets.index(r["detector"]), sets.index(r["ood_set"])] = r["auroc"]
    # the colours span chance (0.5) to perfect; every cell prints its value, so worse-than-chance cells
    # (all the same red) still read apart, while 0.7 vs 0.95 keeps its contrast
    return viz.heatmap_table(z, [ood.spec(d).name for d in dets], sets, title="AUROC per detector and OOD set",
                             zmin=0.5, zmax=1.0, colorbar_title="AUROC")


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
        st.plotly_chart(viz.score_distributions(scores, kind=kind, title=f"{ood.spec(det).name} scores "
                                                "(higher = more in-distribution)"), width="stretch")
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
        if compare.startswith("this"):
            curves = {s: ood.roc_curve(scores["ID"], v, convention=result.convention, max_points=500)[:2]
                      for s, v in scores.items() if s != "ID"}
            title = f"ROC of {ood.spec(det).name}"
        else:
            ood_sets = [s for s in scores if s != "ID"]
            target = st.selectbox("OOD set", ood_sets, key="ood_roc_set")
            curves = {ood.spec(d).name: ood.roc_curve(result.scores[d]["ID"], result.scores[d][target],
                                                      convention=result.convention, max_points=500)[:2]
                      for d in result.detectors if target in result.scores[d]}
            title = f"ROC on {target}"
        axes = (("share of ID flagged (FPR)", "share of OOD caught (TPR)") if result.convention == "ood-positive"
                else ("share of OOD accepted (FPR)", "share of ID accepted (TPR)"))
        st.plotly_chart(viz.roc_curves(curves, title=title, xaxis=axes[0], yaxis=axes[1],
                                       highlight=None if compare.startswith("this") else ood.spec(det).name),
                        width="stretch")
    with tabs[2]:
        allv = np.concatenate(list(scores.values()))
        lo, hi = float(np.quantile(allv, 0.001)), float(np.quantile(allv, 0.999))
        default = float(np.quantile(scores["ID"], 0.05))
        if not hi > lo:
            hi = lo + 1.0
        thr = st.slider("Threshold: samples scoring at or below it are flagged as OOD", lo, hi,
                        min(max(default, lo), hi), step=(hi - lo) / 1000, key=f"ood_thr_{det}", format="%.4g")
        st.plotly_chart(viz.score_distributions(scores, threshold=thr), width="stretch")
        st.dataframe(flagged_counts(scores, thr).style.format({"share flagged": "{:.1%}"}), hide_index=True,
                     width="stretch")
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
            st.plotly_chart(viz.grouped_bars({"AUROC": dict(zip(table["class"], table["auroc"]))},
                                             title="AUROC of each ID class against the OOD scores", yaxis="AUROC",
                                             yrange=(0, 1)), width="stretch")
            st.dataframe(table.style.format(precision=3), hide_index=True, width="stretch")
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


def result_id_outputs(result: SuiteResult) -> ModelOutputs | None:
    return result.meta.get("id_outputs")


def scores_csv(result: SuiteResult) -> bytes:
    """Every score as CSV (detector, set, index, score), built once per result: the page reruns on
    every click and this is the slow part of a rerun (0.5 s for 25 detectors on the default sets)."""
    cached = result.meta.get("scores_csv")
    if cached is not None and cached[0] is result.scores:
        return cached[1]
    rows = [pd.DataFrame({"detector": det, "set": s, "index": np.arange(len(v)), "score": v})
            for det, per_set in result.scores.items() for s, v in per_set.items()]
    data = pd.concat(rows, ignore_index=True).to_csv(index=False).encode() if rows else b""
    result.meta["scores_csv"] = (result.scores, data)
    return data


def export(result: SuiteResult, ws: dict) -> None:
    scores_csv_bytes = scores_csv(result)
    c1, c2, c4, c3 = st.columns(4)
    c1.download_button("Download scores (CSV)", scores_csv_bytes, "ood_scores.csv", "text/csv", key="ood_dl_scores",
                       help="One row per detector, set and sample.")
    c2.download_button("Download metrics (CSV)", result.table.to_csv(index=False).encode(), "ood_metrics.csv",
                       "text/csv", key="ood_dl_metrics", help="One row per detector and OOD set.")
    c4.download_button("Download summary (CSV)", result.summary().to_csv(index=False).encode(), "ood_summary.csv",
                       "text/csv", key="ood_dl_summary",
                       help="One row per detector: every metric's mean over all OOD sets and per group, and timings.")
    det = st.session_state.get("ood_view_det") or result.detectors[0]
    name = ood.spec(det).name
    if c3.button(f"Keep {name} scores", key="ood_keep", icon=":material/bookmark_add:",
                 help=f"Keeps the scores of the detector shown above ({name}) on the ID set and on every "
                      "OOD set as importance distributions (one value per sample), for the Importance page."):
        per_set = result.scores[det]
        added = 0
        for s, v in per_set.items():
            _, new = importance_store.keep(Importance(values=v, unit="sample", scale="score", provenance={
                "analysis": "ood", "method": det, "data": s, "model": wsp.describe_model(ws["model"]),
                "parameters": result.params.get(det, {})}), label=f"OOD · {name} · {s}", with_status=True)
            added += new
        already = len(per_set) - added
        st.success(f"Kept {added} distributions of {name}"
                   + (f" ({already} were already kept)" if already else "") + "; see the Importance page.")
        wsp.page_link("pages/9_Importance_distributions.py", "Open the Importance page", ":material/bar_chart:")
