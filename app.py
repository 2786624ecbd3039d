"""Importance Explorer. The home page is the workspace that every analysis page reads."""
import streamlit as st

from ui import home
from ui import workspace as wsp

wsp.page_header("Importance Explorer", "Look inside models and datasets through importance distributions: "
                "out-of-distribution scores, token importance, attributions and distribution-shift attributions.",
                ":material/insights:")
with st.expander("Change the model or the data", expanded=False):
    left, right = st.columns(2)
    with left:
        st.subheader("Data")
        data_spec = home.data_picker()
    with right:
        st.subheader("Model")
        model_spec = home.model_picker(home.data_kind_of(data_spec))
    ready = data_spec is not None and model_spec is not None
    if st.button("Load workspace", type="primary", disabled=not ready, key="home_apply"):
        if wsp.try_apply(model_spec, data_spec):
            st.rerun()
ws = wsp.get()
st.subheader(f"{wsp.describe_model(ws['model'])} on {wsp.describe_data(ws['data'])}")
home.show_workspace()
