"""OOD detection: which post-hoc detector separates in- from out-of-distribution data, and why."""
import streamlit as st

import core.ood as ood
from core.ood import workflow
from core.ood.workflow import DEFAULT_N_FIT, OODRequest
from ui import ood as ui_ood
from ui import workspace as wsp

wsp.page_header("Out-of-distribution detection",
                "Post-hoc detectors score every sample (higher = more in-distribution) from the model's logits, features, "
                "head or gradients. Fit on the ID training split, score the ID test set and each OOD set.", ":material/radar:")

ws = wsp.get()
with wsp.guard("The workspace could not be loaded; fix it on the home page") as ok:
    _, model, dataset, outputs = wsp.current()
if not ok[0]:
    st.stop()

cands = ui_ood.candidate_sets(ws)
with st.expander("Sets, detectors and parameters", expanded="ood_result" not in st.session_state):
    is_table = dataset.kind == "table"
    id_upload = None
    id_choice = st.radio("ID set (in-distribution evaluation data)", list(ui_ood.ID_CHOICES), horizontal=True,
                         key="ood_id_choice", format_func=lambda k: ui_ood.ID_CHOICES[k].format(wsp.describe_data(ws["data"])),
                         help="The detectors are always fitted on the model's own training data (the train split of "
                              "built-in data, or the workspace's upload). The ID set is the in-distribution data "
                              "they are evaluated on: the workspace's data, or your own, e.g. deployment data.")
    if id_choice == "upload":
        kinds = ["csv", "parquet", "npz"] if is_table else ["zip", "npz"]
        up = st.file_uploader("Your ID set (" + ", ".join(f".{k}" for k in kinds) + ")", type=kinds,
                              key="ood_id_upload")
        if up is not None:
            with wsp.guard("This ID set cannot be used"):
                id_upload = ui_ood.id_upload_spec(up.name, up.getvalue(), dataset)
    c1, c2 = st.columns([2, 1])
    default_sets = workflow.default_sets(cands, is_table)
    set_help = ("Synthetic rows made from the training split (ADBench's families): "
                + "; ".join(f"{k}: {v['help']}" for k, v in cands.items() if "help" in v) + "."
                if is_table else "near: held-out shapes; shift: the Shapes world with one mechanism changed; "
                                 "far: noise, textures, digits.")
    set_names = c1.multiselect("OOD sets", list(cands), default=default_sets, key="ood_sets", help=set_help)
    convention = c2.radio("FPR@95 convention", ["ood-positive", "id-positive"], key="ood_convention",
                          help="ood-positive (OpenOOD, pytorch-ood): share of ID flagged when 95% of OOD is caught. "
                               "id-positive (ViM/KNN papers): share of OOD accepted when 95% of ID is kept.")
    has_model = hasattr(model, "forward")
    reasons = {d: ood.unavailable_reason(d, outputs, has_model=has_model) for d in ood.available()}
    usable = [d for d, r in reasons.items() if r is None]
    detectors = st.multiselect("Detectors", usable, default=ood.REGISTRY.default_selection(usable),
                               key="ood_detectors", format_func=lambda d: f"{ood.spec(d).name} ({ood.spec(d).group})"
                               + (" · slow" if ood.spec(d).slow else ""))
    for d in usable:
        if ood.spec(d).slow and d not in detectors:
            st.caption(f":material/hourglass: {ood.spec(d).name} is left out by default because {ood.spec(d).slow}; "
                       "add it above to run it.")
    for d, r in reasons.items():
        if r:
            st.caption(f":material/block: {ood.spec(d).name}: {r}")
    c1, c2 = st.columns(2)
    if is_table and ws["data"]["kind"] == "builtin":
        n_fit = 0
        c1.caption("Fit set: the whole training split of the table (the split the model was trained on).")
    else:
        n_fit = int(c1.number_input("Fit samples (ID train split)", 100, 20000, DEFAULT_N_FIT, step=100, key="ood_n_fit",
                                   help="Samples of the training split the detectors fit on (and, for TempScale and KL "
                                        "matching, of the validation split). The default suits a live demo; more "
                                        "samples give steadier statistics for the feature detectors."))
    val_note = (" TempScale and KL matching calibrate on as many samples of the held-out validation split."
                if workflow.validation_spec(ws, 1) is not None else "")
    id_note = ("your uploaded ID set" if id_choice == "upload" else f"the workspace's {len(dataset)} samples")
    c2.caption(f"Evaluation: {id_note}, and the workspace's number of samples per built-in OOD set.{val_note}")
    if is_table:
        upload = st.file_uploader("Add your own OOD set (.csv or .parquet with the same feature columns, no label "
                                  "needed; or .npz outputs)", type=["csv", "parquet", "npz"], key="ood_upload")
    else:
        upload = st.file_uploader("Add your own OOD set (.zip ImageFolder or .npz outputs)", type=["zip", "npz"],
                                  key="ood_upload")
    uploads = {}
    if upload is not None:
        name, entry = workflow.ood_upload_set(wsp.resolver(), upload.name, upload.getvalue())
        uploads[name] = entry
        set_names = set_names + [name]
    params = ui_ood.parameter_editor(detectors, outputs)

chosen = {d: params.get(d, ood.spec(d).defaults) for d in detectors}
request = OODRequest(ws, tuple(set_names), chosen, n_fit=n_fit, convention=convention, uploads=uploads,
                     id_spec=id_upload if id_choice == "upload" else None)
missing_id = id_choice == "upload" and id_upload is None
if missing_id:
    st.info("Upload your ID set above, or choose the workspace's data as the ID set.")
result = wsp.run_section(
    "ood", request, ui_ood.run, prefix="ood", button="Run detectors", title="OOD detection",
    disabled=not (detectors and set_names) or missing_id, failed="The detectors could not run",
    waiting="Choose sets and detectors, then press **Run detectors**.",
    changed="The sets, detectors or parameters above",
    # metrics come from the kept scores: a new convention applies at once
    adjust=lambda r: r if r.convention == convention else r.with_convention(convention))

for d, msg in result.errors.items():
    name = ood.spec(d).name
    st.warning(f"{name} did not run: {msg.removeprefix(name + ': ')}")
for k, msg in result.set_errors.items():
    st.warning(f"{k}: {msg}")
st.subheader("Results")
ui_ood.results_table(result)
st.plotly_chart(ui_ood.auroc_heatmap(result), width="stretch")
assumption = ui_ood.assumption_warning(result)
if assumption:
    st.info(assumption, icon=":material/info:")


def images_of(set_name, i):
    spec = result.set_specs.get(set_name)
    if spec is None:
        return None
    ds = wsp.load_data(spec)
    index = result.id_index if set_name == "ID" else None
    i = int(index[i]) if index is not None else i
    return None if ds.images is None or i >= len(ds.images) else ds.images[i]


st.subheader("Score distributions")
ui_ood.distribution_tabs(result, ws, images_of)
st.subheader("Export")
ui_ood.export(result, ws)
