"""The workspace in the app: the session's specs, uploads and the shared caches (the resolving is core.workspace).

A workspace is two JSON-able *specs*, one for the model and one for the data, held in
``st.session_state["workspace"]``. Specs are resolved into objects through bounded caches,
so every page that reads the same workspace shares the same model, dataset and outputs.
A new workspace replaces the old one only after it has loaded without error.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitAPIException

import core.data as data
from core import runtime
from core import workspace as cws
from core.errors import UserError
from core.outputs import ModelOutputs
from core.workspace import (  # noqa: F401  (the page-facing names of the workspace)
    DEFAULT_WORKSPACE,
    MAX_UPLOADS,
    WorkspaceError,
    check_compatible,
    data_kind_of,
    describe_data,
    describe_model,
    is_table_file,
    key_of,
)

from .cache import datasets_cache, models_cache, outputs_cache

#: the only exceptions shown as "your input is wrong"; anything else is a bug (see :func:`guard`)
USER_ERRORS: tuple[type[BaseException], ...] = (UserError,)
log = logging.getLogger("importance_explorer")


def get() -> dict:
    """The current workspace (the default one on first visit)."""
    if "workspace" not in st.session_state:
        st.session_state["workspace"] = cws.default_workspace()
    return st.session_state["workspace"]


def set_workspace(model_spec: dict, data_spec: dict) -> None:
    st.session_state["workspace"] = {"model": model_spec, "data": data_spec}


def uploads() -> cws.UploadStore:
    """This session's uploaded files (bounded: the most recent few)."""
    files = st.session_state.setdefault("_uploads", OrderedDict())
    return cws.UploadStore(files=files)


def resolver() -> cws.Resolver:
    """The workspace resolver of this session: its uploads, and the caches every session shares."""
    return cws.Resolver(uploads=uploads(), models=models_cache(), datasets=datasets_cache(), outputs=outputs_cache())


# ---------- uploads: bytes live in the session, bounded ----------
def store_upload(filename: str, content: bytes) -> str:
    return uploads().add(filename, content)


def data_upload_spec(filename: str, content: bytes, **options) -> dict:
    """Store an uploaded data file (bounded, in the session) and return its data spec."""
    return resolver().data_upload_spec(filename, content, **options)


def upload_bytes(digest: str) -> tuple[str, bytes]:
    return uploads().get(digest)


# ---------- resolving specs ----------
def load_data(spec: dict, split: str | None = None, n: int | None = None) -> data.Dataset:
    """The dataset a spec names; ``split``/``n`` override the spec (e.g. the train split for fitting)."""
    return resolver().load_data(spec, split=split, n=n)


def load_model(model_spec: dict, data_spec: dict):
    """The model a spec names. Tabular models are trained here, on the training split of the table."""
    return resolver().load_model(model_spec, data_spec)


def outputs_for(model_spec: dict, data_spec: dict, progress=None, model_data: dict | None = None) -> ModelOutputs:
    """Run the model over the data once; later calls with the same specs return the cached outputs."""
    return resolver().outputs(model_spec, data_spec, progress=progress, model_data=model_data)


@contextmanager
def progress_bar(label: str):
    """A Streamlit progress bar for the duration of the block, as a ``progress(fraction, message)`` callback."""
    bar = st.progress(0.0, text=label)

    def progress(frac: float, msg: str):
        bar.progress(min(max(float(frac), 0.0), 1.0), text=f"{label}: {msg}")

    try:
        yield progress
    finally:
        bar.empty()


def run_with_progress(model_spec: dict, data_spec: dict, label: str = "Running the model",
                      model_data: dict | None = None) -> ModelOutputs:
    """``outputs_for`` with a Streamlit progress bar shown only while work is done (or waited for)."""
    r = resolver()
    if r.has_outputs(model_spec, data_spec, model_data):
        return r.outputs(model_spec, data_spec, model_data=model_data)
    with progress_bar(label) as progress:
        return r.outputs(model_spec, data_spec, progress=progress, model_data=model_data)


def current() -> tuple[dict, Any, data.Dataset, ModelOutputs]:
    """(workspace, model, dataset, outputs) of the current workspace, with a progress bar if needed."""
    ws = get()
    dataset = load_data(ws["data"])
    model = load_model(ws["model"], ws["data"])
    check_compatible(model, dataset)
    outputs = run_with_progress(ws["model"], ws["data"])
    return ws, model, dataset, outputs


NAVIGATION = [("app.py", "Workspace", ":material/home:"),
              ("pages/1_OOD_detection.py", "OOD detection", ":material/radar:"),
              ("pages/2_Token_pruning.py", "Token pruning", ":material/content_cut:"),
              ("pages/3_Shift_attribution.py", "Shift attribution", ":material/compare_arrows:"),
              ("pages/4_Attribution.py", "Attribution", ":material/image_search:"),
              ("pages/9_Importance_distributions.py", "Importance distributions", ":material/bar_chart:")]


def page_header(title: str, caption: str, icon: str) -> None:
    """The opening of every page: page config, title, caption, and the sidebar (links + workspace)."""
    runtime.configure()  # thread pools sized once for the machine (a no-op after the first page)
    st.set_page_config(page_title=title, page_icon=icon, layout="wide")
    st.title(title)
    st.caption(caption)
    sidebar_summary()


def page_link(path: str, label: str, icon: str | None = None) -> None:
    """A link to another page; nothing when the page runs on its own (AppTest knows no other pages)."""
    try:
        st.page_link(path, label=label, icon=icon)
    except StreamlitAPIException:
        pass


def sidebar_summary() -> None:
    """Labelled page links and the current workspace, on every page."""
    ws = get()
    with st.sidebar:
        for path, label, icon in NAVIGATION:
            page_link(path, label, icon)
        st.divider()
        st.caption("Workspace")
        st.markdown(f"**Model:** {describe_model(ws['model'])}  \n**Data:** {describe_data(ws['data'])}")
        with st.expander("Settings", icon=":material/settings:"):
            from .cache import gate_status, total_budget_mb, usage_rows

            st.caption(f"Server caches, shared by every session (budget {total_budget_mb():,} MB in all; "
                       "set IE_CACHE_MB to change it). The least recently used entries go first.")
            rows = usage_rows()  # a markdown table: an st.dataframe here cost every run of every page ~20 ms
            head = list(rows[0])
            st.markdown("\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                                  + ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in rows]))
            st.caption(gate_status())


def run_section(analysis: str, request, run, *, prefix: str, button: str, disabled: bool, failed: str, title: str,
                waiting: str, changed: str, adjust=None):
    """The run button, the Code expander and the kept result of an analysis page.

    The button (key ``{prefix}_run``) runs ``run(request)`` under :func:`guard` (``failed`` says what did
    not happen; the earlier result is kept) into ``st.session_state["{prefix}_result"]``. Without a result
    the page shows ``waiting`` and stops; ``adjust(result)`` may turn a kept result into the one to show
    (kept in its place); a result of other settings than ``request`` gets the ``changed`` notice."""
    from .code import code_expander

    state = f"{prefix}_result"
    if st.button(button, type="primary", key=f"{prefix}_run", disabled=disabled):
        with guard(f"{failed}; earlier results are kept"):
            st.session_state[state] = run(request)
    if request is not None:
        code_expander(analysis, request, title, key=prefix)
    result = st.session_state.get(state)
    if result is None:
        st.info(waiting)
        st.stop()
    if adjust is not None:
        result = st.session_state[state] = adjust(result)
    if request is None or result.fingerprint != request.fingerprint:
        st.info(f"{changed} changed since these results were computed; press **{button}** to update them.",
                icon=":material/update:")
    return result


def show_error(err: BaseException, context: str = "") -> None:
    """A user-facing error message: no traceback, the previous workspace untouched."""
    prefix = f"{context}: " if context else ""
    st.error(f"{prefix}{err}", icon=":material/error:")


def show_bug(err: BaseException, context: str = "") -> None:
    """An unexpected exception: a short "this is a bug" message in the page, the traceback in the server log."""
    log.error("Unexpected error%s", f" ({context})" if context else "", exc_info=err)
    prefix = f"{context}: " if context else ""
    st.error(f"{prefix}this is a bug in Importance Explorer, not a problem with your input "
             f"({type(err).__name__}). Please report it; the details are in the server log. "
             "Your workspace and earlier results are kept.", icon=":material/bug_report:")


@contextmanager
def guard(context: str = ""):
    """Run a block of work: a :class:`UserError` becomes its message, any other exception a "this is a
    bug" message (traceback in the server log); the page goes on and earlier results stay. Yields a
    one-item list that holds False when the block failed."""
    ok = [True]
    try:
        yield ok
    except UserError as e:
        ok[0] = False
        show_error(e, context)
    except Exception as e:  # noqa: BLE001  (Streamlit's stop/rerun are BaseExceptions and pass through)
        ok[0] = False
        show_bug(e, context)


def try_apply(model_spec: dict, data_spec: dict) -> bool:
    """Load a new workspace; switch to it only if everything loads. Returns success."""
    with guard("Could not load this workspace; the previous one is kept") as ok:
        r = resolver()
        dataset = r.load_data(data_spec)
        model = r.load_model(model_spec, data_spec)
        check_compatible(model, dataset)
        run_with_progress(model_spec, data_spec, label="Running the model over the data")
    if not ok[0]:
        return False
    set_workspace(model_spec, data_spec)
    return True
