"""Shift attribution: which changes in the data's distribution account for a change in the model's performance."""
import streamlit as st

from core.shift.workflow import ShiftRequest
from ui import shift as ui_shift
from ui import workspace as wsp

wsp.page_header("Shift attribution",
                "Why did the model do worse (or better) on the target than on the source? Each mechanism of a causal "
                "graph (a root's distribution, or a variable given its parents) gets its Shapley share of the change, "
                "estimated by re-weighting samples with domain classifiers (Zhang et al., ICML 2023).",
                ":material/compare_arrows:")

ws = wsp.get()
with wsp.guard("The workspace could not be loaded; fix it on the home page") as ok:
    _, model, dataset, outputs = wsp.current()
if not ok[0]:
    st.stop()

request, graph_ok = None, False
with st.expander("Source, target, graph and settings", expanded="shift_result" not in st.session_state):
    sides = ui_shift.side_controls(ws, dataset)
    if sides is not None:
        draft = ShiftRequest(ws, **sides)
        with wsp.guard("The source and the target cannot be compared") as ok:
            scenario = ui_shift.scenario(draft)
        if ok[0]:
            graph, groups, graph_ok = ui_shift.graph_editor(scenario)
            metric, n_boot, seed = ui_shift.metric_controls(outputs.num_classes)
            settings = ui_shift.settings_controls()
            request = ShiftRequest(ws, **sides, graph=graph, groups=groups, metric=metric, n_boot=n_boot, seed=seed,
                                   settings=settings)

result = wsp.run_section("shift", request, ui_shift.run, prefix="shift", button="Explain the change",
                         title="Distribution-shift attribution", disabled=request is None or not graph_ok,
                         failed="The explanation could not run",
                         waiting="Choose the source, the target and the graph, then press **Explain the change**.",
                         changed="The source, target, graph or settings above")

st.subheader("Why the performance changed")
ui_shift.summary(result)
st.plotly_chart(ui_shift.waterfall(result), width="stretch")
ui_shift.views(result)
st.subheader("Export")
ui_shift.export(result)
