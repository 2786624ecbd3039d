"""Token pruning: which tokens Zero-TPrune, ToMe and EViT keep in each layer of a ViT, and what it costs and saves."""
import streamlit as st

import core.pruning as pruning
from core.pruning.workflow import PruningRequest, compact_params
from ui import pruning as ui_pr
from ui import workspace as wsp

wsp.page_header("Token pruning",
                "Zero-shot token pruning and merging of a Vision Transformer: accuracy against MACs and measured speed, "
                "and which tokens each layer keeps and why. On the Shapes world the object masks say whether a method "
                "keeps the object, the background or the corner marker.", ":material/content_cut:")

ws = wsp.get()
with st.expander("Model, methods and budget", expanded="prune_result" not in st.session_state):
    chosen = ui_pr.choose_model(ws)
    if chosen is None:
        st.stop()
    run_ws, model, dataset = chosen
    methods = ui_pr.choose_methods(model)
    budgets, budget_params, budget_ok = (ui_pr.budget_controls(model, methods, wsp.key_of(run_ws["model"])) if methods
                                         else ((), {}, False))
    c1, c2, c3 = st.columns([1, 1, 2])
    n_images = int(c1.number_input("Images", 1, len(dataset), min(300, len(dataset)), step=50, key="prune_n",
                                   help="The first images of the data (the workspace's, when it holds images)."))
    seed = int(c2.number_input("Seed", 0, 10_000, 0, key="prune_seed", help="Seed of the random baseline's draws."))
    with c3:
        params = ui_pr.method_parameters(model, methods)
        with st.popover("Throughput measurement"):
            t_batch = int(st.number_input("Images per timed batch", 1, 256, 32, key="prune_t_batch"))
            t_rounds = int(st.number_input("Interleaved timing rounds (median reported)", 1, 20, 3, key="prune_t_rounds"))
            batch = int(st.number_input("Images per forward pass (accuracy)", 1, 512, 100, key="prune_batch"))

chosen_methods = {m: compact_params(m, {**params.get(m, {}), **budget_params.get(m, {})}) for m in methods}
request = PruningRequest(run_ws, chosen_methods, budgets=budgets, n_images=n_images, seed=seed, batch_size=batch,
                         throughput_batch=t_batch, throughput_rounds=t_rounds)
result = wsp.run_section("pruning", request, ui_pr.run, prefix="prune", button="Run", title="Token pruning",
                         disabled=not (methods and budget_ok), failed="The pruning run failed",
                         waiting="Choose the methods and a budget, then press **Run**.",
                         changed="The model, methods or budget above")

st.subheader(f"{', '.join(dict.fromkeys(p.name for p in result.points))} on {result.model_name}")
ui_pr.messages(result)
ui_pr.headline(result)
sweep, per_image, per_layer = st.tabs(["Sweep", "Per image", "Per layer"])
with sweep:
    ui_pr.sweep_view(result)
with per_image:
    ui_pr.per_image_view(result)
with per_layer:
    point = ui_pr.per_layer_view(result)
st.subheader("Export")
ui_pr.export(result, point)
with st.expander("What the methods compute"):
    for m in result.methods:
        st.markdown(f"**{pruning.spec(m).name}**: {pruning.spec(m).description}")
        st.caption(pruning.spec(m).reference)
