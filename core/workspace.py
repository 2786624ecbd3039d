"""The workspace: which model and which data every analysis reads, resolved without any UI.

A workspace is two JSON-able *specs*, one for the model and one for the data::

    {"model": {"kind": "zoo", "name": "shapes-vit"},
     "data": {"kind": "builtin", "name": "shapes", "split": "test", "n": 500, "seed": 0, "shift": None}}

Model kinds: ``zoo`` (a shipped model), ``timm`` (an architecture by name), ``checkpoint`` (a timm
architecture with uploaded weights), ``tabular`` (a scikit-learn model trained here on the table's
training split), ``none`` (precomputed outputs). Data kinds: ``builtin``, ``upload`` (bytes in an
:class:`UploadStore`, named by digest), ``table-ood`` (synthetic OOD rows of a table).

A :class:`Resolver` turns specs into objects through caches it is given (any object with
``get(key)`` and ``get_or_compute(key, compute, progress=None)``; :class:`core.cache.ByteCache`
bounds them in bytes and computes identical work once), so the app's sessions, the audit CLI and a
notebook resolve the same specs to the same shared, read-only model, dataset and outputs::

    r = Resolver()                       # private unbounded caches for a script
    ws, model, dataset, outputs = r.current(DEFAULT_WORKSPACE)
"""
from __future__ import annotations

import copy
import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import core.data as data
import core.models as models
from core.cache import ByteCache
from core.errors import UserError
from core.extract import ExtractError
from core.extract import run as extract_run
from core.outputs import ModelOutputs

DEFAULT_WORKSPACE = {
    "model": {"kind": "zoo", "name": "shapes-vit"},
    "data": {"kind": "builtin", "name": "shapes", "split": "test", "n": 500, "seed": 0, "shift": None},
}
MAX_UPLOADS = 4
Progress = Callable[[float, str], None]


class WorkspaceError(UserError):
    """A model and a dataset that cannot be used together, or a source that is gone."""


def default_workspace() -> dict:
    """A fresh copy of the default workspace (the shipped Shapes ViT on 500 Shapes test images)."""
    return copy.deepcopy(DEFAULT_WORKSPACE)


def key_of(spec: Any) -> str:
    """A stable text key of a JSON-able spec (the cache key and the fingerprint source)."""
    return json.dumps(spec, sort_keys=True, default=str)


def fingerprint(spec: Any) -> str:
    """A short stable hash of a JSON-able spec."""
    return hashlib.sha1(key_of(spec).encode()).hexdigest()[:16]


class UploadStore:
    """Uploaded files by digest, the most recent ``max_files`` kept (the UI holds one per session)."""

    def __init__(self, max_files: int = MAX_UPLOADS, files: OrderedDict | None = None):
        """``files``: an existing digest -> (filename, bytes) mapping to use in place (a session's)."""
        self.max_files = max_files
        self._files: OrderedDict[str, tuple[str, bytes]] = files if files is not None else OrderedDict()

    def add(self, filename: str, content: bytes) -> str:
        digest = hashlib.sha1(content).hexdigest()[:16]
        self._files[digest] = (filename, content)
        self._files.move_to_end(digest)
        while len(self._files) > self.max_files:
            self._files.popitem(last=False)
        return digest

    def get(self, digest: str) -> tuple[str, bytes]:
        if digest not in self._files:
            raise WorkspaceError("The uploaded file is no longer in this session; upload it again.")
        return self._files[digest]

    def __contains__(self, digest: str) -> bool:
        return digest in self._files

    def __len__(self) -> int:
        return len(self._files)


def is_table_file(filename: str) -> bool:
    from core.data.uploads import TABLE_EXTENSIONS

    return any(filename.lower().endswith(ext) for ext in TABLE_EXTENSIONS)


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
    if spec["kind"] == "table-ood":
        return f"{spec.get('ood', '?')} outliers of {describe_data(spec['base'])}"
    parts = [spec["name"], spec.get("split", "test")]
    if spec.get("n"):
        parts.append(f"n={spec['n']}")
    if spec.get("shift"):
        parts.append(f"shift={spec['shift']}")
    if spec.get("seed"):
        parts.append(f"seed={spec['seed']}")
    return " · ".join(str(p) for p in parts)


def data_kind_of(spec: dict | None) -> str:
    """'image', 'table' or 'outputs' for a data spec (uploads judged by their extension)."""
    if spec is None:
        return "image"
    if spec["kind"] == "builtin":
        return data.kind_of(spec["name"])
    if spec["kind"] == "table-ood":
        return "table"
    name = spec.get("filename", "").lower()
    if name.endswith(".npz"):
        return "outputs"
    if is_table_file(name):
        return "table"
    return "image"


def check_compatible(model, dataset: data.Dataset) -> None:
    """Refuse a model and a dataset that cannot be used together, saying what would fit."""
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


def _unbounded(name: str) -> ByteCache:
    return ByteCache(max_bytes=1 << 62, name=name)


class Resolver:
    """Resolves workspace specs into datasets, models and model outputs through the given caches.

    ``uploads``: the :class:`UploadStore` that upload specs name by digest. ``models``,
    ``datasets``, ``outputs``: shared caches (default: private unbounded ones, for scripts)."""

    def __init__(self, uploads: UploadStore | None = None, models: Any = None, datasets: Any = None,
                 outputs: Any = None):
        self.uploads = uploads if uploads is not None else UploadStore()
        self.models = models if models is not None else _unbounded("models")
        self.datasets = datasets if datasets is not None else _unbounded("datasets")
        self.outputs_cache = outputs if outputs is not None else _unbounded("outputs")

    # -- uploads
    def store_upload(self, filename: str, content: bytes) -> str:
        return self.uploads.add(filename, content)

    def data_upload_spec(self, filename: str, content: bytes, **options) -> dict:
        """Store an uploaded data file and return its data spec."""
        return {"kind": "upload", "filename": filename, "digest": self.store_upload(filename, content),
                "options": options}

    def upload_bytes(self, digest: str) -> tuple[str, bytes]:
        return self.uploads.get(digest)

    # -- resolving
    def load_data(self, spec: dict, split: str | None = None, n: int | None = None) -> data.Dataset:
        """The dataset a spec names; ``split``/``n`` override the spec (e.g. the train split for fitting)."""
        spec = dict(spec)
        if split is not None:
            spec["split"] = split
        if n is not None:
            spec["n"] = n
        if spec.get("kind") == "upload":
            self.upload_bytes(spec["digest"])  # a clear message when the bytes are gone, even if the data is cached
        return self.datasets.get_or_compute(key_of(spec), lambda: self._build_data(spec))

    def _build_data(self, spec: dict) -> data.Dataset:
        kind = spec.get("kind")
        if kind == "builtin":
            return data.load(spec["name"], split=spec.get("split", "test"), n=spec.get("n"), seed=spec.get("seed", 0),
                             shift=spec.get("shift"), **spec.get("params", {}))
        if kind == "upload":
            filename, content = self.upload_bytes(spec["digest"])
            from core.data.uploads import load_upload

            options = {k: v for k, v in spec.get("options", {}).items() if v is not None}
            return load_upload(content, filename, **options)
        if kind == "table-ood":
            from core.data.table_ood import table_outliers

            return table_outliers(self.load_data(spec["base"]), spec["ood"], n=spec.get("n"), seed=spec.get("seed", 0))
        raise WorkspaceError(f"Unknown data source kind '{kind}'.")

    def model_key(self, model_spec: dict, data_spec: dict) -> str:
        key_spec = dict(model_spec)
        if model_spec["kind"] == "tabular":  # the model depends on the table it is trained on, not on the split viewed
            key_spec["table"] = {k: v for k, v in data_spec.items() if k not in ("split", "n")}
        return key_of(key_spec)

    def load_model(self, model_spec: dict, data_spec: dict):
        """The model a spec names (None for precomputed outputs). Tabular models are trained here, on
        the training split of the table."""
        if model_spec["kind"] == "none":
            return None
        return self.models.get_or_compute(self.model_key(model_spec, data_spec),
                                          lambda: self._build_model(model_spec, data_spec))

    def _build_model(self, model_spec: dict, data_spec: dict):
        kind = model_spec["kind"]
        if kind == "zoo":
            return models.load(model_spec["name"])
        if kind == "timm":
            params = {k: model_spec[k] for k in ("pretrained", "num_classes", "input_size", "class_names")
                      if model_spec.get(k) is not None}
            return models.load(model_spec["name"], **params)
        if kind == "checkpoint":
            filename, content = self.upload_bytes(model_spec["digest"])
            params = {k: model_spec[k] for k in ("num_classes", "input_size", "class_names") if model_spec.get(k) is not None}
            return models.load(model_spec["name"], checkpoint=content, checkpoint_name=filename, **params)
        if kind == "tabular":
            from core.models.tabular import train_tabular

            train = (self.load_data(data_spec, split="train", n=None) if data_spec["kind"] == "builtin"
                     else self.load_data(data_spec))
            return train_tabular(model_spec["name"], train, seed=model_spec.get("seed", 0))
        raise WorkspaceError(f"Unknown model source kind '{kind}'.")

    def outputs_key(self, model_spec: dict, data_spec: dict, model_data: dict | None = None) -> str:
        parts = {"model": model_spec, "data": data_spec}
        if model_data is not None and model_data != data_spec and model_spec.get("kind") == "tabular":
            parts["model_data"] = model_data  # a tabular model is the one trained on model_data's table
        return key_of(parts)

    def has_outputs(self, model_spec: dict, data_spec: dict, model_data: dict | None = None) -> bool:
        return self.outputs_key(model_spec, data_spec, model_data) in self.outputs_cache

    def outputs(self, model_spec: dict, data_spec: dict, progress: Progress | None = None,
                model_data: dict | None = None) -> ModelOutputs:
        """Run the model over the data once; later calls (from any session) share the cached outputs.

        ``model_data``: the workspace data whose table a tabular model is trained on, when
        ``data_spec`` is another set (an OOD set); defaults to ``data_spec``."""
        key = self.outputs_key(model_spec, data_spec, model_data)

        def compute(report=None):
            dataset = self.load_data(data_spec)
            model = self.load_model(model_spec, model_data or data_spec)
            check_compatible(model, dataset)
            try:
                return extract_run(model, dataset, batch_size=128, progress=report)
            except UserError:
                raise
            except (RuntimeError, OSError) as e:  # torch shape errors etc.: the model does not fit this data
                raise ExtractError(f"The model could not run on '{dataset.name}' ({type(e).__name__}: {e}).") from e

        return self.outputs_cache.get_or_compute(key, compute, progress=progress)

    def current(self, ws: dict, progress: Progress | None = None) -> tuple[dict, Any, data.Dataset, ModelOutputs]:
        """(workspace, model, dataset, outputs) of workspace ``ws``."""
        dataset = self.load_data(ws["data"])
        model = self.load_model(ws["model"], ws["data"])
        check_compatible(model, dataset)
        outputs = self.outputs(ws["model"], ws["data"], progress=progress)
        return ws, model, dataset, outputs


__all__ = ["DEFAULT_WORKSPACE", "Resolver", "UploadStore", "WorkspaceError", "check_compatible", "data_kind_of",
           "default_workspace", "describe_data", "describe_model", "fingerprint", "is_table_file", "key_of"]
