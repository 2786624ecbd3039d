"""The token-pruning page's widget groups. The workflow itself is core.pruning.workflow; this module connects
it to widgets, the shared cache and a progress bar, and draws the results with core.viz.pruning."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

import core.pruning as pruning
import core.viz.pruning as vz
from core.pruning import workflow
from core.pruning.schedule import default_layers, tome_r_for_keep_rate
from core.pruning.sweep import SweepPoint, SweepResult
from core.pruning.workflow import BUDGET_PARAMS, PruningRequest
from core.workspace import key_of

from . import importance_store, tables
from . import workspace as wsp
from .cache import shared_figure, shared_run
from .params import param_control

SHIPPED = workflow.SHIPPED_VIT
MODEL_LABELS = {"workspace": "the workspace's model: {}", "shipped": "the shipped Shapes ViT (shapes-vit)",
                "timm": "a timm ViT by name"}
TIMM_EXAMPLES = ("deit_tiny_patch16_224, deit_small_patch16_224, deit_tiny_distilled_patch16_224, vit_small_patch16_224, "
                 "vit_small_patch14_reg4_dinov2")
BUDGET_MODES = {"macs": "MACs reduction (sweep: every method matched to the same cost)",
                "knob": "keep rate / r (each method's own knob, with a per-block schedule)"}
SCHEDULES = {"blocks": "one keep rate at the pruning blocks", "per-block": "per block (schedule editor)"}
#: the MACs reductions offered, in percent (those beyond what the chosen methods reach are left out)
BUDGET_STEPS = tuple(range(5, 100, 5))


# ---------------------------------------------------------------- the model and the images
def choose_model(ws: dict) -> tuple[dict, Any, Any] | None:
    """The workspace (model and data specs) the run uses, its model and its images, from the model
    widgets; None (after a message) when none can be used. A workspace whose model cannot be pruned
    gets the reason, naming what is supported, and a button switching the workspace to the shipped ViT."""
    data_spec = workflow.data_spec_for(ws)
    ws_model, reason = None, None
    with wsp.guard("The workspace's model could not be loaded") as ok:
        ws_model = wsp.load_model(ws["model"], ws["data"])
    if ok[0]:
        reason = workflow.model_reason(ws_model)
        if reason:
            st.warning(f"The workspace's model cannot be pruned. {reason}", icon=":material/block:")
            if st.button("Switch the workspace to the shipped ViT (shapes-vit)", key="prune_switch",
                         icon=":material/swap_horiz:", help="Changes the workspace's model for every page (its data is "
                         "kept when it holds images, else the Shapes test images are used)."):
                if wsp.try_apply(dict(SHIPPED), data_spec):
                    st.rerun()
    options = (["workspace"] if ok[0] and reason is None else []) + \
              (["shipped"] if ws["model"] != SHIPPED or not ok[0] else []) + ["timm"]
    choice = st.radio("Model", options, horizontal=True, key="prune_model_" + "-".join(options),
                      format_func=lambda o: MODEL_LABELS[o].format(wsp.describe_model(ws["model"])),
                      help="Token pruning works on " + pruning.SUPPORTED + ".")
    if data_spec is not ws["data"]:
        st.caption(f"The workspace's data holds no images; the run uses {wsp.describe_data(data_spec)}.")
    if choice == "workspace":
        model_spec, model = ws["model"], ws_model
    elif choice == "shipped":
        model_spec = dict(SHIPPED)
        with wsp.guard("The shipped ViT could not be loaded") as ok2:
            model = wsp.load_model(model_spec, data_spec)
        if not ok2[0]:
            return None
    else:
        model_spec = timm_spec(data_spec)
        model = None
        with wsp.guard("This model cannot be loaded") as ok2:
            model = wsp.load_model(model_spec, data_spec)
        if not ok2[0]:
            return None
        why = workflow.model_reason(model)
        if why:
            st.error(why, icon=":material/block:")
            return None
        if not model_spec["pretrained"]:
            st.caption("Random weights: the accuracy is at chance level, but the tokens each method keeps, the MACs and "
                       "the measured speed are those of the architecture.")
    images = None
    with wsp.guard("The images could not be loaded") as ok3:
        images = wsp.load_data(data_spec)
        if images.images is None:
            raise pruning.PruningError(f"Token pruning needs images; '{images.name}' has none.")
    if not ok3[0]:
        return None
    return {"model": model_spec, "data": data_spec}, model, images


def timm_spec(data_spec: dict) -> dict:
    """The model spec of the timm widgets (random weights unless pretrained is ticked)."""
    c1, c2, c3 = st.columns([2, 1, 1])
    name = c1.text_input("timm ViT architecture", "deit_tiny_patch16_224", key="prune_timm_name",
                         help=f"A timm VisionTransformer, e.g. {TIMM_EXAMPLES}.")
    n_classes = 6 if data_spec.get("name") == "shapes" else 10
    classes = int(c2.number_input("Classes", 2, 1000, n_classes, key="prune_timm_classes"))
    size = int(c3.number_input("Input size (pixels)", 32, 384, 64, step=16, key="prune_timm_size",
                               help="The images are resized to it; the patch grid is size / patch size."))
    pretrained = st.checkbox("Pretrained hub weights (needs network)", False, key="prune_timm_pretrained")
    return {"kind": "timm", "name": name.strip(), "pretrained": pretrained, "num_classes": classes, "input_size": size}


# ---------------------------------------------------------------- methods and budgets
def choose_methods(model) -> list[str]:
    """The methods multiselect: those that apply to ``model`` (the others are named with the reason)."""
    caps = pruning.capabilities(model)
    reasons = {m: pruning.REGISTRY.unavailable_reason(m, caps) for m in pruning.available()}
    usable = [m for m, r in reasons.items() if r is None]
    default = [m for m in workflow.DEFAULT_METHODS if m in usable]
    chosen = st.multiselect("Methods", usable, default=default, key="prune_methods_" + "-".join(usable),
                            format_func=lambda m: f"{pruning.spec(m).name} ({pruning.spec(m).group})",
                            help="Zero-TPrune, ToMe and EViT are zero-shot: no training, the model is patched in place. "
                                 "Random is the floor every method should beat.")
    left_out = [m for m in usable if m not in default]
    if left_out:
        st.caption(", ".join(pruning.spec(m).name for m in left_out) + (" is" if len(left_out) == 1 else " are")
                   + " left out by default to keep the first run short; add it above.")
    for m, r in reasons.items():
        if r:
            st.caption(f":material/block: {pruning.spec(m).name}: {r}")
    return chosen


def _keep_rate_methods(methods: list[str]) -> list[str]:
    return [m for m in methods if any(p.name == "layers" for p in pruning.spec(m).params)]


def budget_controls(model, methods: list[str], model_key: str) -> tuple[tuple[float, ...] | None, dict[str, dict], bool]:
    """The budget section: (budgets or None, method -> its budget parameters, usable). MACs budgets are
    offered only up to what every chosen method reaches (the bound comes from the model; ``model_key``
    names it for the shared cache of those bounds); a keep rate or r comes with its range from the spec
    (ToMe's largest r from :func:`core.pruning.param_bounds`)."""
    info = pruning.inspect_model(model)
    depth = info.depth
    keepers = _keep_rate_methods(methods)
    mode = st.radio("Budget", list(BUDGET_MODES), format_func=BUDGET_MODES.get, horizontal=True, key="prune_budget_mode")
    params: dict[str, dict] = {m: {} for m in methods}
    if mode == "knob" and st.radio("Schedule", list(SCHEDULES), format_func=SCHEDULES.get, horizontal=True,
                                   key="prune_schedule") == "per-block":
        params = schedule_editor(model, methods)
        return None, params, _show_reductions(model, params)
    c1, c2 = st.columns(2)
    if keepers:
        layers = c1.multiselect("Pruning blocks (keep-rate methods)", list(range(depth)), default=list(default_layers(depth)),
                                key=f"prune_layers_{depth}",
                                help="The blocks that prune, 0-based (Zero-TPrune, EViT, top-k and random; ToMe merges "
                                     "in every block). Default: depth·{1/4, 1/2, 3/4}, EViT's blocks 4/7/10 of DeiT.")
        if not layers:
            c1.caption(":red[Choose at least one block.] The default blocks are used.")
            layers = list(default_layers(depth))
        if tuple(layers) != default_layers(depth):
            for m in keepers:
                params[m]["layers"] = sorted(int(v) for v in layers)
    if "tome" in methods:
        sched = c2.selectbox("ToMe r schedule", ["constant", "decreasing"], key="prune_tome_schedule",
                             help="constant: r tokens merged in every block; decreasing: 2r in the first block linearly "
                                  "down to 0 in the last (the same total).")
        if sched != "constant":
            params["tome"]["r_schedule"] = sched
    if mode == "macs":
        limits = shared_figure(("budget-limits", model_key), key_of(params), lambda: workflow.budget_limits(model, params))
        reach = min(limits.values()) if limits else 0.0
        options = [b for b in BUDGET_STEPS if b / 100 <= reach]
        chosen = st.multiselect("MACs reductions", options, default=[b for b in (20, 35) if b in options],
                                key="prune_budgets_" + "-".join(map(str, options)), format_func=lambda b: f"−{b}%",
                                help="Each method's keep rate (ToMe: r) is set so that the model's MACs drop by this "
                                     "share, patch embedding and head included.")
        if limits:
            st.caption(f"On this model the chosen methods reach at most −{np.floor(100 * reach):.0f}% MACs ("
                       + ", ".join(f"{pruning.spec(m).name} −{v:.0%}" for m, v in limits.items())
                       + "); larger budgets are not offered. Pruning at more blocks reaches further.")
        if not chosen:
            st.warning("Choose at least one MACs reduction.")
            return (), params, False
        return tuple(sorted(b / 100 for b in chosen)), params, True
    # one keep rate at the pruning blocks; ToMe's r (blank: matched to the keep rate's MACs)
    c1, c2 = st.columns(2)
    keep_spec = pruning.spec(keepers[0]).param("keep_rate") if keepers else pruning.spec("tome").param("keep_rate")
    keep_rate = float(c1.number_input("Keep rate", float(keep_spec.low), float(keep_spec.high), float(keep_spec.default),
                                      step=0.05, key="prune_keep_rate", help=keep_spec.help))
    for m in methods:
        if m != "tome":
            params[m]["keep_rate"] = keep_rate
    if "tome" in methods:
        bounds = pruning.param_bounds("tome", model)
        with c2:
            r = param_control(pruning.spec("tome").param("r"), "prune_tome_r", bounds.get("r"))
        if r is None:
            params["tome"]["keep_rate"] = keep_rate
        else:
            params["tome"]["r"] = int(r)
    return None, params, _show_reductions(model, params)


def schedule_editor(model, methods: list[str]) -> dict[str, dict]:
    """One keep rate per block (keep-rate methods) and one r per block (ToMe), bounded by the specs:
    keep rates in the schedule's range, r up to ToMe's largest r on this model. Returns method -> its
    budget parameters (``schedule``, or ToMe's ``r_list``)."""
    info = pruning.inspect_model(model)
    depth = info.depth
    layers = default_layers(depth)
    st.caption("One value per block (0-based). A keep rate of 1 prunes nothing in that block; ToMe merges r tokens in "
               "each block (at most half of those it holds).")
    sched_spec = pruning.spec("zero-tprune").param("schedule")
    r_high = int(pruning.param_bounds("tome", model).get("r", info.n_patches // 2))
    r0 = min(tome_r_for_keep_rate(info, 0.7), r_high)
    per_row = min(depth, 12)
    rates: list[float] = []
    rs: list[int] = []
    if _keep_rate_methods(methods):
        st.markdown("**Keep rate per block** (Zero-TPrune, EViT, top-k, random)")
        for start in range(0, depth, per_row):
            cols = st.columns(per_row)
            for b in range(start, min(depth, start + per_row)):
                rates.append(float(cols[b - start].number_input(
                    f"block {b}", float(sched_spec.low), float(sched_spec.high), 0.7 if b in layers else 1.0, step=0.05,
                    key=f"prune_sched_keep_{depth}_{b}")))
    if "tome" in methods:
        st.markdown(f"**ToMe r per block** (0 to {r_high})")
        for start in range(0, depth, per_row):
            cols = st.columns(per_row)
            for b in range(start, min(depth, start + per_row)):
                rs.append(int(cols[b - start].number_input(f"block {b} ", 0, r_high, r0, step=1,
                                                           key=f"prune_sched_r_{depth}_{b}")))
    return {m: ({"r_schedule": "list", "r_list": rs} if m == "tome" else {"schedule": rates}) for m in methods}


def _show_reductions(model, params: dict[str, dict]) -> bool:
    """A caption with the MACs reduction of every method's knob; the core's message (with the valid range)
    when a value is impossible. Returns whether every method's budget can run."""
    with wsp.guard("This budget cannot be used") as ok:
        cuts = {m: workflow.reduction(model, m, p) for m, p in params.items()}
    if ok[0] and cuts:
        st.caption("MACs of these settings: " + ", ".join(f"{pruning.spec(m).name} −{v:.1%}" for m, v in cuts.items())
                   + ". Use MACs reductions above to compare the methods at equal cost.")
    return ok[0]


def method_parameters(model, methods: list[str]) -> dict[str, dict]:
    """The parameters of every chosen method other than its budget (set above), from its spec."""
    out: dict[str, dict] = {}
    with st.popover("Method parameters"):
        tabs = st.tabs([pruning.spec(m).name for m in methods]) if methods else []
        for tab, m in zip(tabs, methods):
            spec = pruning.spec(m)
            bounds = pruning.param_bounds(m, model)
            with tab:
                st.caption(spec.reference)
                shown = [p for p in spec.params if p.name not in BUDGET_PARAMS and not (m == "random" and p.name == "seed")]
                out[m] = {p.name: param_control(p, f"prune_param_{m}_{p.name}", bounds.get(p.name)) for p in shown}
                if not shown:
                    st.caption("Its budget (above) is its only parameter." if m != "random" else
                               "Its seed is the run's seed (below); its budget is set above.")
    return out


# ---------------------------------------------------------------- running
def run(request: PruningRequest) -> SweepResult:
    """The sweep of ``request`` (core.pruning.workflow.evaluate) behind a progress bar.

    The result is shared through the results cache under the request's fingerprint: sessions that press
    Run with the same settings at the same time wait for one computation and get the same (read-only)
    result; every configuration's evaluation is cached there too."""
    result = shared_run("pruning", request, workflow.evaluate, "Pruning")
    return result


def images(result: SweepResult):
    """The images the result was computed on (the first n of its request's data)."""
    return workflow.images_of(wsp.resolver(), result.request)


# ---------------------------------------------------------------- showing
def _rkey(result: SweepResult) -> str:
    return result.fingerprint


def _budget_label(b: float | None) -> str:
    return "as set" if b is None else f"−{b:.0%} MACs"


def messages(result: SweepResult) -> None:
    for m, msg in result.errors.items():
        name = pruning.spec(m).name
        st.warning(f"{name} did not run: {msg.removeprefix(name + ': ')}", icon=":material/warning:")
    for p in result.points:
        if p.note:
            st.caption(f":material/info: {p.note}")


def headline(result: SweepResult) -> None:
    base = result.baseline
    c = st.columns(4)
    c[0].metric("Images", f"{result.n_images:,}")
    c[1].metric("Unpruned accuracy", "n/a" if base.accuracy is None else f"{base.accuracy:.1%}")
    c[2].metric("Unpruned GMACs per image", f"{base.gmacs:.4g}")
    c[3].metric("Unpruned images/s (measured)", f"{base.images_per_s:,.0f}",
                help=f"Median of {result.request.throughput_rounds if result.request else '?'} interleaved timing rounds "
                     "on this server, batches of "
                     f"{result.request.throughput_batch if result.request else '?'} images; other sessions share the cores, "
                     "so the ratios between configurations say more than the absolute numbers.")


TABLE_COLUMNS = {"label": "configuration", "keep_rate": "keep rate", "r": "r", "accuracy": "accuracy",
                 "accuracy_drop": "accuracy drop", "gmacs": "GMACs", "macs_ratio": "MACs ratio",
                 "images_per_s": "images/s", "speedup": "speed-up", "importance_ms": "importance ms/batch",
                 "importance_share": "importance share", "final_tokens": "tokens at the end",
                 "object_retention": "object retained", "random_retention": "random retains"}


def _table(result: SweepResult, name: str, build):
    """A table derived from a cached result, computed once for every session (like its figures)."""
    return shared_figure(_rkey(result), name, build)


def sweep_view(result: SweepResult) -> None:
    table = _table(result, "table", result.table)
    c1, c2 = st.columns(2)
    c1.plotly_chart(shared_figure(_rkey(result), "acc-gmacs", lambda: vz.accuracy_vs_cost(
        table, "gmacs", title="Accuracy vs GMACs per image (analytical)")), width="stretch")
    c2.plotly_chart(shared_figure(_rkey(result), "acc-speed", lambda: vz.accuracy_vs_cost(
        table, "images_per_s", title="Accuracy vs measured images/s")), width="stretch")
    cols = [c for c in TABLE_COLUMNS if c in table]
    shown = table[cols].copy()
    for c in ("keep_rate", "r"):  # the knob a configuration does not use: "—" (a null cell would read "None")
        shown[c] = [f"{v:.4g}" if pd.notna(v) else "—" for v in pd.to_numeric(shown[c], errors="coerce")]
    shown = shown.rename(columns=TABLE_COLUMNS)
    pct = [TABLE_COLUMNS[c] for c in ("accuracy", "accuracy_drop", "importance_share", "object_retention",
                                      "random_retention", "macs_ratio") if c in table]
    fmt = {c: "{:.1%}" for c in pct}
    fmt.update({"GMACs": "{:.4g}", "images/s": "{:,.0f}", "speed-up": "{:.2f}×", "importance ms/batch": "{:.2f}"})
    tables.show(shown, fmt)
    st.caption("GMACs are analytical (attention and MLP with the actual token counts, patch embedding and head "
               "included). images/s is measured here: every configuration warmed up, then timed in interleaved rounds "
               "(median). importance ms/batch is the time a method spends deciding (WPR, similarity, top-k), part of "
               "its forward time. Object retained: the share of the object's patches the tokens still hold after the "
               "last pruning block; random retains: what random keeping holds at the same budget.")
    if result.baseline.gmacs < 0.5:
        st.caption(f":material/speed: This model needs only {result.baseline.gmacs:.3g} GMACs per image, so the fixed "
                   "cost of every pass (the patch embedding, Python, the method's decision) weighs as much as the tokens "
                   "saved, and measured speed-ups stay small and noisy. On a larger ViT such as DeiT-S (4.6 GMACs) the "
                   "saved tokens dominate; benchmarks/pruning.py measures it.")
    st.markdown("**Agreement between methods**: do they keep the same patches?")
    budgets = [b for b in result.budgets]
    budget = budgets[0]
    if len(budgets) > 1:
        budget = st.selectbox("At budget", budgets, index=len(budgets) - 1, format_func=_budget_label,
                              key="prune_agree_budget")
    pts = [p for p in result.points if (p.budget is None and budget is None) or
           (p.budget is not None and budget is not None and abs(p.budget - budget) < 1e-9)]
    if len(pts) < 2:
        st.info("Agreement needs at least two methods.")
    else:
        st.plotly_chart(shared_figure(_rkey(result), "agreement", lambda: vz.agreement(
            result.agreement(budget), title=f"Kept-patch overlap after the last block ({_budget_label(budget)})"),
            budget), width="stretch")
        random = next((p for p in pts if p.method == "random"), None)
        expect = ""
        if random is not None:
            k = random.final_retention(result.n_images, result.info.n_patches).sum(1).mean()
            expect = f" (here {k / result.info.n_patches:.0%}, Random's share of kept patches)"
        st.caption("Per image, the patches both methods still hold (merged patches count by their share of the token), "
                   "over the patches the smaller of the two holds; averaged over images. Two independent random choices "
                   f"of k of n patches overlap k/n on average{expect}.")


def per_image_view(result: SweepResult) -> None:
    data = images(result)
    names = data.class_names or []
    budgets = list(result.budgets)
    budget = budgets[-1]
    c1, c2 = st.columns([1, 2])
    if len(budgets) > 1:
        budget = c1.selectbox("Budget", budgets, index=len(budgets) - 1, format_func=_budget_label,
                              key="prune_img_budget")
    pts = workflow.points_at(result, budget)
    labels = result.labels
    wrong = workflow.wrong_counts(result, pts)
    which = c2.radio("Images", ["all", "wrong"], horizontal=True, key="prune_img_filter",
                     format_func={"all": "all images", "wrong": "images a pruned configuration gets wrong"}.get)
    index = np.arange(result.n_images) if which == "all" else np.flatnonzero(wrong > 0)
    if not len(index):
        st.info("No pruned configuration at this budget gets an image wrong; showing all images.")
        index = np.arange(result.n_images)

    def describe(i: int) -> str:
        y = int(labels[i]) if labels is not None else -1
        cls = names[y] if 0 <= y < len(names) else "unlabelled"
        return f"#{i} · {cls}" + (f" · {wrong[i]} wrong" if wrong[i] else "")

    i = int(st.selectbox("Image", [int(v) for v in index], format_func=describe, key=f"prune_img_{which}"))
    preds = [(result.baseline.label, result.baseline.preds[i])] + [(p.label, p.preds[i]) for p in pts]
    y = int(labels[i]) if labels is not None else -1
    st.caption(f"True class: **{names[y] if 0 <= y < len(names) else 'none'}** · predictions: " + ", ".join(
        f"{lab} → {names[int(v)] if 0 <= int(v) < len(names) else int(v)}" + (" ✓" if int(v) == y else " ✗")
        for lab, v in preds))
    show_scores = st.toggle("Show the scores behind each decision", False, key="prune_img_scores",
                            help="Each block's score of every patch, coloured by its rank among that block's patches.")
    image = data.images[i]
    st.caption("Darkened: patches dropped by then. Tinted: patches merged or fused into one token, one colour per token "
               "(ToMe's merge groups, EViT's fused inattentive token); patches without tint are tokens of their own. "
               f"Each table counts what a block did to the token holding each of the image's {result.info.n_patches} "
               "patches (a merged token counts every patch it holds).")
    for p in pts:
        if not p.layers:
            continue
        titles = [f"after block {lt.block}<br>{lt.n_out} tokens" for lt in p.layers]
        st.plotly_chart(shared_figure(_rkey(result), "kept", lambda p=p, titles=titles: vz.kept_tokens(
            image, [lt.groups(i) for lt in p.layers], result.info.grid, titles=titles, title=p.label), p.label, i),
            width="stretch")
        if show_scores:
            st.plotly_chart(shared_figure(_rkey(result), "scores", lambda p=p, titles=titles: vz.token_score_maps(
                [lt.scores[i] for lt in p.layers], result.info.grid, titles=titles, score_name=p.score_name,
                title=f"{p.label}: {p.score_name}"), p.label, i), width="stretch")
        st.dataframe(workflow.token_fates(p, i), hide_index=True, width="stretch")


def per_layer_view(result: SweepResult) -> SweepPoint:
    """Importance distributions, their concentration, region retention and the head filter; returns the
    configuration chosen (for Keep)."""
    labels = [p.label for p in result.points]
    label = st.selectbox("Configuration", labels, key="prune_layer_point")
    p = result.points[labels.index(label)]

    def scores():
        return {f"block {lt.block} ({lt.n_in} tokens)": np.concatenate(p.token_scores(j)) for j, lt in enumerate(p.layers)}

    c1, c2 = st.columns(2)
    c1.plotly_chart(shared_figure(_rkey(result), "hist", lambda: vz.importance_by_layer(
        scores(), score_name=p.score_name, title=f"{p.label}: token scores per block"), label),
        width="stretch")
    stats = _table(result, "layer-statistics", result.layer_statistics)
    finite = stats[np.isfinite(stats["entropy"])]
    with c2:
        if finite.empty:
            st.info("Entropy and Gini need scores that are amounts of importance; none of these configurations has them.")
        else:
            st.plotly_chart(shared_figure(_rkey(result), "stats", lambda: vz.layer_statistics(
                finite, title="Concentration of the token scores per block")), width="stretch")
    if p.score_scale != "mass":
        st.caption(f"{p.name}'s scores ({p.score_name}) are not amounts of importance, so entropy and Gini are not "
                   "computed for it.")
    st.markdown("**Which patches survive: the Shapes ground truth**")
    if not result.regions:
        st.info("These images have no ground-truth masks (only the built-in Shapes world has them), so object-token "
                "retention cannot be measured.")
    else:
        region = st.radio("Region", list(result.regions), horizontal=True, key="prune_region",
                          format_func=lambda r: workflow.REGION_NAMES.get(r, r))
        title = f"Share of {workflow.REGION_NAMES.get(region, region)}'s patches still held after each pruning block"
        st.plotly_chart(shared_figure(_rkey(result), "retention", lambda: vz.retention_by_layer(
            _table(result, "retention", result.retention_table), region, title=title), region), width="stretch")
        said = _table(result, "verdicts", lambda: workflow.verdicts(result))
        st.markdown("\n".join(f"- {s}" for s in said.values()))
        st.caption("Retention weights a merged patch by its share of the token. Random keeping holds every patch "
                   "with probability (tokens left)/(patches), whatever the region; a region counts as kept or dropped "
                   "when it differs from that by more than ×1.1 and 3 standard errors.")
        with st.expander("Retention table"):
            tables.show(_table(result, "regions", lambda: workflow.region_summary(result)),
                        {"retention": "{:.1%}", "random": "{:.1%}", "factor": "{:.2f}", "z": "{:.1f}", "budget": "{:.0%}"})
    st.markdown("**Zero-TPrune's variance head filter**")
    zero = p if p.method == "zero-tprune" else next((q for q in result.points if q.method == "zero-tprune"
                                                     and q.budget == p.budget), None)
    if zero is None or not any(lt.head_variance is not None for lt in zero.layers):
        st.info("The head filter is Zero-TPrune's; add Zero-TPrune to the methods to see which heads it leaves out.")
    else:
        var = {lt.block: lt.head_variance for lt in zero.layers if lt.head_variance is not None}
        kept = {lt.block: lt.head_kept for lt in zero.layers if lt.head_kept is not None}
        on = zero.params.get("head_filter", True)
        st.plotly_chart(shared_figure(_rkey(result), "heads", lambda: vz.head_variance(
            var, kept, zero.params.get("v_min") if on else None, zero.params.get("v_max") if on else None,
            title=f"{zero.label}: variance of each head's importance (N·s)"), zero.label), width="stretch")
        left_out = workflow.heads_left_out(zero)
        st.markdown(("In most images the filter leaves out " + ", ".join(left_out) + "." if left_out else
                     "In most images the filter keeps every head: none is flat or concentrated enough to be left out.")
                    if on else "")
        st.caption("Per pruning block and head, the median over images of the variance of N·s (bars: interquartile "
                   "range). Heads below v_min spread their importance flat, heads above v_max pour it onto a few tokens; "
                   "the filter leaves both out (red: left out in most images)."
                   + ("" if on else " The filter is off in this run: every head is aggregated."))
    return p


def export(result: SweepResult, point: SweepPoint) -> None:
    c1, c2, c3 = st.columns(3)
    c1.download_button("Download the sweep (CSV)", lambda: _table(result, "table", result.table).to_csv(
                       index=False).encode(), "pruning_sweep.csv", "text/csv", key="prune_dl_table", on_click="ignore",
                       help="One row per configuration, the unpruned model first.")
    c2.download_button("Download retention (CSV)", lambda: _table(result, "retention", result.retention_table).to_csv(
                       index=False).encode(), "pruning_retention.csv", "text/csv", key="prune_dl_retention",
                       on_click="ignore",
                       help="Per configuration, pruning block and region: the share retained and random's.")
    with c3:
        importance_store.keep_control(
            lambda: workflow.to_importances(result, point.method, point.budget), key="prune_keep",
            what=f"{point.label} token importances",
            help=f"Keeps the scores {point.label} gave every patch at each pruning block (one distribution per block, "
                 "unit 'token'), for the Importance page.")
