"""Attribution: which pixels or features a model's decision rests on, by several methods, and how far to trust each."""
import streamlit as st

import core.attribution as A
from core.attribution import workflow
from core.attribution.workflow import AttributionRequest
from ui import attribution as ui_at
from ui import workspace as wsp

wsp.page_header("Attribution",
                "Gradient, perturbation, class-activation and attention methods say which pixels or features a "
                "prediction rests on. They often disagree, so each map is scored: faithfulness (does removing what it "
                "ranks first change the prediction?), complexity, and on the Shapes world, whether it lies on the object.",
                ":material/image_search:")

ws = wsp.get()
with st.expander("Samples, methods and metrics", expanded="attr_result" not in st.session_state):
    chosen = ui_at.choose_data(ws)
    if chosen is None:
        st.stop()
    run_ws, model, dataset, outputs = chosen
    kind = "image" if dataset.images is not None else "table"
    samples = ui_at.sample_picker(run_ws, dataset, outputs, kind)
    methods = ui_at.choose_methods(model, kind)
    params = ui_at.method_parameters(model, methods, kind)
    metrics = ui_at.metric_controls(model, dataset)
    request = AttributionRequest(run_ws, {m: params.get(m, {}) for m in methods}, metrics=metrics, **samples)
    ui_at.preview(request, dataset)

ready = ui_at.cost_gate(request)
result = wsp.run_section("attribution", request, ui_at.run, prefix="attr", button="Run", title="Attribution",
                         disabled=not (methods and ready), failed="The attribution run failed",
                         waiting="Choose the samples and the methods, then press **Run**.",
                         changed="The samples, methods or metrics above")

st.subheader(workflow.describe(result))
ui_at.messages(result)
ui_at.headline(result)
ui_at.views(result)
st.subheader("Export")
ui_at.export(result)
with st.expander("What the methods compute"):
    for m in result.methods:
        st.markdown(f"**{A.spec(m).name}**: {A.spec(m).description}")
        st.caption(A.spec(m).reference)
