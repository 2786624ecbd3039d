"""core.workspace.Resolver: specs -> shared datasets, models and outputs, without any UI."""
from __future__ import annotations

import numpy as np
import pytest

from core.cache import ByteCache
from core.workspace import (
    Resolver,
    UploadStore,
    WorkspaceError,
    data_kind_of,
    default_workspace,
    describe_data,
    fingerprint,
)

TABLE = {"model": {"kind": "tabular", "name": "logistic-regression", "seed": 0},
         "data": {"kind": "builtin", "name": "wine", "split": "test", "n": None, "seed": 0, "shift": None}}


def test_resolving_shares_one_object_per_spec_and_reports_progress():
    r = Resolver()
    seen = []
    ws, model, dataset, outputs = r.current(TABLE, progress=lambda f, m: seen.append(f))
    assert dataset.kind == "table" and len(outputs) == len(dataset)
    assert seen and seen[-1] == pytest.approx(1.0)
    again = Resolver(models=r.models, datasets=r.datasets, outputs=r.outputs_cache)  # another session, same caches
    assert again.current(TABLE)[3] is outputs and again.load_model(TABLE["model"], TABLE["data"]) is model
    # the tabular model is the one trained on the table's train split, whichever split is viewed
    train_spec = {**TABLE["data"], "split": "train"}
    assert r.load_model(TABLE["model"], train_spec) is model
    assert r.has_outputs(TABLE["model"], TABLE["data"])


def test_uploads_live_in_the_store_and_a_lost_one_is_explained():
    store = UploadStore(max_files=2)
    r = Resolver(uploads=store)
    csv = b"a,b,label\n" + b"".join(f"{i},{i % 7},{i % 2}\n".encode() for i in range(40))
    spec = r.data_upload_spec("t.csv", csv, label="label")
    ds = r.load_data(spec)
    assert ds.kind == "table" and len(ds) == 40 and data_kind_of(spec) == "table"
    for i in range(2):
        r.store_upload(f"other{i}.zip", bytes([i]))
    assert spec["digest"] not in store  # only the most recent two are kept
    with pytest.raises(WorkspaceError, match="no longer in this session; upload it again"):
        r.load_data(spec)


def test_incompatible_model_and_data_are_refused_clearly():
    r = Resolver()
    with pytest.raises(WorkspaceError, match="is a table; choose a tabular model"):
        r.current({"model": {"kind": "zoo", "name": "shapes-vit"}, "data": TABLE["data"]})
    with pytest.raises(WorkspaceError, match="Unknown data source kind"):
        r.load_data({"kind": "ftp"})


def test_bounded_caches_keep_the_workspace_working():
    tiny = ByteCache(max_bytes=1, name="outputs")  # nothing fits: every call recomputes, nothing breaks
    r = Resolver(outputs=tiny)
    a = r.outputs(TABLE["model"], TABLE["data"])
    b = r.outputs(TABLE["model"], TABLE["data"])
    assert a is not b and np.array_equal(a.logits, b.logits) and len(tiny) == 0


def test_specs_describe_and_fingerprint_stably():
    ws = default_workspace()
    assert ws is not default_workspace() and fingerprint(ws) == fingerprint(default_workspace())
    assert describe_data(ws["data"]) == "shapes · test · n=500"
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
