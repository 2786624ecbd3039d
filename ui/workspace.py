"""The workspace: which model and which data every page analyses.

A workspace is two JSON-able *specs*, one for the model and one for the data, held in
``st.session_state["workspace"]``. Specs are resolved into objects through bounded caches,
so every page that reads the same workspace shares the same model, dataset and outputs.
A new workspace replaces the old one only after it has loaded without error.
"""
from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitAPIException

import core.data as data
import core.models as models
from core.extract import ExtractError, ModelOutputs
from core.extract import run as extract_run

from .cache import datasets_cache, models_cache, outputs_cache

DEFAULT_WORKSPACE = {
    "model": {"kind": "zoo", "name": "shapes-vit"},
    "data": {"kind": "builtin", "name": "shapes", "split": "test", "n": 500, "seed": 0, "shift": None},
}
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError)  # DataError, ModelError, ExtractError, OODError …
MAX_UPLOADS = 4


class WorkspaceError(ValueError):
    """A model and a dataset that cannot be used together, or a source that is gone."""


def key_of(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True, default=str)


def get() -> dict:
    """The current workspace (the default one on first visit)."""
    if "workspace" not in st.session_state:
        st.session_state["workspace"] = json.loads(json.dumps(DEFAULT_WORKSPACE))
    return st.session_state["workspace"]


def set_workspace(model_spec: dict, data_spec: dict) -> None:
    st.session_state["workspace"] = {"model": model_spec, "data": data_spec}


# ---------- uploads: bytes live in the session, bounded ----------
def store_upload(filename: str, content: bytes) -> str:
    digest = hashlib.sha1(content).hexdigest()[:16]
    uploads: OrderedDict = st.session_state.setdefault("_uploads", OrderedDict())
    uploads[digest] = (filename, content)
    uploads.move_to_end(digest)
    while len(uploads) > MAX_UPLOADS:
        uploads.popitem(last=False)
    return digest


def data_upload_spec(filename: str, content: bytes, **options) -> dict:
    """Store an uploaded data file (bounded, in the session) and return its data spec."""
    return {"kind": "upload", "filename": filename, "digest": store_upload(filename, content), "options": options}


def is_table_file(filename: str) -> bool:
    from core.data.uploads import TABLE_EXTENSIONS

    return any(filename.lower().endswith(ext) for ext in TABLE_EXTENSIONS)


def upload_bytes(digest: str) -> tuple[str, bytes]:
    uploads = st.session_state.get("_uploads", {})
    if digest not in uploads:
        raise WorkspaceError("The uploaded file is no longer in this session; upload it again.")
    return uploads[digest]


# ---------- resolving specs ----------
def load_data(spec: dict, split: str | None = None, n: int | None = None) -> data.Dataset:
    """The dataset a spec names; ``split``/``n`` override the spec (e.g. the train split for fitting)."""
    spec = dict(spec)
    if split is not None:
        spec["split"] = split
    if n is not None:
        spec["n"] = n
    key = key_of(spec)

    def compute():
        if spec["kind"] == "builtin":
            return data.load(spec["name"], split=spec.get("split", "test"), n=spec.get("n"), seed=spec.get("seed", 0),
                             shift=spec.get("shift"), **spec.get("params", {}))
        if spec["kind"] == "upload":
            filename, content = upload_bytes(spec["digest"])
            from core.data.uploads import load_upload

            options = {k: v for k, v in spec.get("options", {}).items() if v is not None}
            return load_upload(content, filename, **options)
        if spec["kind"] == "table-ood":
            from core.data.table_ood import table_outliers

            return table_outliers(load_data(spec["base"]), spec["ood"], n=spec.get("n"), seed=spec.get("seed", 0))
        raise WorkspaceError(f"Unknown data source kind '{spec['kind']}'.")

    return datasets_cache().get_or_compute(key, compute)


def load_model(model_spec: dict, data_spec: dict):
    """The model a spec names. Tabular models are trained here, on the training split of the table."""
    kind = model_spec["kind"]
    if kind == "none":
        return None
    key_spec = dict(model_spec)
    if kind == "tabular":  # the model depends on the table it is trained on, not on the split viewed
        key_spec["table"] = {k: v for k, v in data_spec.items() if k not in ("split", "n")}
    key = key_of(key_spec)

    def compute():
        if kind == "zoo":
            return models.load(model_spec["name"])
        if kind == "timm":
            params = {k: model_spec[k] for k in ("pretrained", "num_classes", "input_size", "class_names") if model_spec.get(k) is not None}
            return models.load(model_spec["name"], **params)
        if kind == "checkpoint":
            filename, content = upload_bytes(model_spec["digest"])
            params = {k: model_spec[k] for k in ("num_classes", "input_size", "class_names") if model_spec.get(k) is not None}
            return models.load(model_spec["name"], checkpoint=content, checkpoint_name=filename, **params)
        if kind == "tabular":
            from core.models.tabular import train_tabular

            train = load_data(data_spec, split="train", n=None) if data_spec["kind"] == "builtin" else load_data(data_spec)
            return train_tabular(model_spec["name"], train, seed=model_spec.get("seed", 0))
        raise WorkspaceError(f"Unknown model source kind '{kind}'.")

    return models_cache().get_or_compute(key, compute)


def check_compatible(model, dataset: data.Dataset) -> None:
    if dataset.kind == "outputs":
        return
    if model is None:
        raise WorkspaceError(f"'{dataset.name}' needs a model; only precomputed .npz outputs can be used without one.")
    is_torch = hasattr(model, "forward")
    if dataset.kind == "table" and is_torch:
        raise WorkspaceError(f"'{dataset.name}' is a table; choose a tabular model (logistic regression, gradient boosting, "
                             "random forest or MLP) for it.")
    if dataset.kind == "image" and not is_torch:
        raise WorkspaceError(f"'{dataset.name}' holds images; choose an image model (a shipped model, a timm model or a checkpoint).")


def _outputs_key(model_spec: dict, data_spec: dict, model_data: dict | None) -> str:
    parts = {"model": model_spec, "data": data_spec}
    if model_data is not None and model_data != data_spec and model_spec.get("kind") == "tabular":
        parts["model_data"] = model_data  # a tabular model is the one trained on model_data's table
    return key_of(parts)


def outputs_for(model_spec: dict, data_spec: dict, progress=None, model_data: dict | None = None) -> ModelOutputs:
    """Run the model over the data once; later calls with the same specs return the cached outputs.

    ``model_data``: the workspace data whose table a tabular model is trained on, when ``data_spec``
    is another set (an OOD set); defaults to ``data_spec``."""
    key = _outputs_key(model_spec, data_spec, model_data)
    cached = outputs_cache().get(key)
    if cached is not None:
        return cached
    dataset = load_data(data_spec)
    model = load_model(model_spec, model_data or data_spec)
    check_compatible(model, dataset)
    out = extract_run(model, dataset, batch_size=128, progress=progress)
    return outputs_cache().put(key, out)


def run_with_progress(model_spec: dict, data_spec: dict, label: str = "Running the model",
                      model_data: dict | None = None) -> ModelOutputs:
    """``outputs_for`` with a Streamlit progress bar shown only while work is done."""
    key = _outputs_key(model_spec, data_spec, model_data)
    cached = outputs_cache().get(key)
    if cached is not None:
        return cached
    bar = st.progress(0.0, text=label)

    def progress(frac: float, msg: str):
        bar.progress(min(max(frac, 0.0), 1.0), text=f"{label}: {msg}")

    try:
        return outputs_for(model_spec, data_spec, progress=progress, model_data=model_data)
    finally:
        bar.empty()


def describe_model(spec: dict) -> str:
    kind = spec["kind"]
    if kind == "zoo":
        return f"{spec['name']} (shipped)"
    if kind == "timm":
        return f"timm {spec['name']}" + (" (pretrained)" if spec.get("pretrained") else " (random init)")
    if kind == "checkpoint":
        return f"timm {spec['name']} + {spec.get('filename', 'checkpoint')}"
    if kind == "tabular":
        return f"{spec['name']} (trained in-app)"
    return "no model (precomputed outputs)"


def describe_data(spec: dict) -> str:
    if spec["kind"] == "upload":
        return f"upload: {spec.get('filename', '?')}"
    parts = [spec["name"], spec.get("split", "test")]
    if spec.get("n"):
        parts.append(f"n={spec['n']}")
    if spec.get("shift"):
        parts.append(f"shift={spec['shift']}")
    if spec.get("seed"):
        parts.append(f"seed={spec['seed']}")
    return " · ".join(str(p) for p in parts)


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
              ("pages/9_Importance_distributions.py", "Importance distributions", ":material/bar_chart:")]


def page_header(title: str, caption: str, icon: str) -> None:
    """The opening of every page: page config, title, caption, and the sidebar (links + workspace)."""
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


def show_error(err: BaseException, context: str = "") -> None:
    """A user-facing error message: no traceback, the previous workspace untouched."""
    prefix = f"{context}: " if context else ""
    st.error(f"{prefix}{err}", icon=":material/error:")


def try_apply(model_spec: dict, data_spec: dict) -> bool:
    """Load a new workspace; switch to it only if everything loads. Returns success."""
    try:
        dataset = load_data(data_spec)
        model = load_model(model_spec, data_spec)
        check_compatible(model, dataset)
        run_with_progress(model_spec, data_spec, label="Running the model over the data")
    except USER_ERRORS as e:
        show_error(e, "Could not load this workspace; the previous one is kept")
        return False
    except (RuntimeError, OSError) as e:  # torch shape errors etc.: still the user's input
        show_error(ExtractError(f"The model could not run on this data ({type(e).__name__}: {e})"),
                   "Could not load this workspace; the previous one is kept")
        return False
    set_workspace(model_spec, data_spec)
    return True
