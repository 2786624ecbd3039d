"""The "Code" expander of every analysis page: the core-API snippet of the current run and a notebook of it."""
from __future__ import annotations

import streamlit as st

from core import codegen


def code_expander(analysis: str, request, title: str, key: str) -> None:
    """The snippet that reproduces ``request`` with the core API, and a button exporting it as .ipynb."""
    with st.expander("Code", icon=":material/code:"):
        st.caption("The same run with the core API, in a script or a notebook (run it from the project's root "
                   "folder; it works offline).")
        st.code(codegen.snippet(analysis, request), language="python")
        ups = codegen.uploads_in(request)
        if ups:
            st.caption("It refers to your uploads (" + ", ".join(ups) + "): the snippet shows where to give them.")
        st.download_button("Export as a notebook (.ipynb)", lambda: codegen.notebook(analysis, request, title),
                           f"{key}_run.ipynb", "application/x-ipynb+json", key=f"{key}_ipynb",
                           icon=":material/download:", on_click="ignore")
