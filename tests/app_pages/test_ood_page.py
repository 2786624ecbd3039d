"""AppTest of pages/1_OOD_detection.py: the default analysis runs every detector without an exception."""
import json
import re
from pathlib import Path

import pytest
from ood_npz import npz_outputs
from streamlit.testing.v1 import AppTest

import core.ood as ood

ROOT = Path(__file__).resolve().parents[2]

TIMEOUT = 600


@pytest.fixture(scope="module")
def ran():
    at = AppTest.from_file(str(ROOT / "pages/1_OOD_detection.py"), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    # the slow detectors (ODIN) are left out of the default selection with the reason shown; every detector runs
    # when chosen
    assert at.multiselect(key="ood_detectors").value == ood.REGISTRY.default_selection()
    assert "odin" not in at.multiselect(key="ood_detectors").value
    assert any("ODIN is left out by default because" in c.value for c in at.caption)
    at.multiselect(key="ood_detectors").set_value(ood.available())
    at.number_input(key="ood_n_fit").set_value(600)
    at.button(key="ood_run").click().run()
    assert not at.exception, at.exception
    return at


def test_default_run_scores_every_detector(ran):
    result = ran.session_state["ood_result"]
    assert set(result.detectors) == set(ood.available()), result.errors
    assert not result.errors
    sets = set(result.table["ood_set"])
    assert {"near: shapes-near-ood", "far: noise", "far: textures", "far: digits"} <= sets
    assert result.table["auroc"].between(0, 1).all()


def test_tempscale_is_calibrated_on_the_validation_split_and_shows_it(ran):
    result = ran.session_state["ood_result"]
    info = result.info["tempscale"]
    assert "validation set (600 held-out ID samples)" in info["fitted on"]
    assert 0.05 < info["temperature"] < 20
    assert "validation set (600 held-out ID samples)" in result.info["klm"]["fitted on"]
    ran.selectbox(key="ood_view_det").set_value("tempscale").run()
    assert not ran.exception
    text = " ".join(m.value for m in ran.markdown)
    assert "Fitted on:" in text and "temperature =" in text


def test_detectors_whose_assumptions_the_vit_breaks_are_named(ran):
    # the shipped ViT's pre-logit features are signed; ASH and DICE assume post-ReLU features
    text = " ".join(i.value for i in ran.info)
    assert "ASH-B" in text and "DICE" in text and "non-negative" in text
    assert "MSP" not in text.split("were designed")[0]


def test_figures_are_drawn(ran):
    specs = [json.loads(c.proto.spec) for c in ran.get("plotly_chart")]
    kinds = [t["type"] for s in specs for t in s["data"]]
    assert "heatmap" in kinds  # AUROC per detector and set
    assert "bar" in kinds  # score histograms
    heat = next(s for s in specs if s["data"][0]["type"] == "heatmap")
    assert len(heat["data"][0]["y"]) == len(ood.available())


def test_switching_detector_view_reuses_results(ran):
    before = ran.session_state["ood_result"]
    ran.selectbox(key="ood_view_det").set_value("knn").run()
    assert not ran.exception
    assert ran.session_state["ood_result"] is before


def test_keep_as_importance(ran):
    ran.button(key="ood_keep").click().run()
    assert not ran.exception
    kept = ran.session_state["importances"]
    assert len(kept) > 0
    first = next(iter(kept.values()))
    assert first.unit == "sample" and first.provenance["analysis"] == "ood"
    assert first.scale == "score"  # OOD scores have an arbitrary zero: no Gini/entropy on the Importance page
    # keeping the same scores again adds no copies
    n = len(kept)
    ran.button(key="ood_keep").click().run()
    assert not ran.exception
    assert len(ran.session_state["importances"]) == n
    assert any("already kept" in s.value for s in ran.success)


_npz = npz_outputs


def test_npz_workspace_runs_array_detectors_and_explains_the_rest():
    from collections import OrderedDict

    at = AppTest.from_file(str(ROOT / "pages/1_OOD_detection.py"), default_timeout=TIMEOUT)
    at.session_state["_uploads"] = OrderedDict({"page-npz": ("id.npz", _npz(400, 16))})
    at.session_state["workspace"] = {"model": {"kind": "none"},
                                     "data": {"kind": "upload", "filename": "id.npz", "digest": "page-npz",
                                              "options": {}}}
    at.run()
    assert not at.exception
    captions = " ".join(c.value for c in at.caption)
    assert "ODIN" in captions and "torch model" in captions
    at.file_uploader(key="ood_upload").set_value(("far.npz", _npz(300, 16, ood=True, seed=1), "application/octet-stream"))
    at.run()
    at.button(key="ood_run").click().run()
    assert not at.exception
    result = at.session_state["ood_result"]
    assert "odin" not in result.detectors and "energy" in result.detectors and "knn" in result.detectors
    assert not result.errors, result.errors
    assert (result.table["auroc"] > 0.9).mean() > 0.7, result.table[["detector", "auroc"]]


def test_mismatched_and_non_finite_ood_uploads_get_messages_and_others_still_run():
    from collections import OrderedDict

    at = AppTest.from_file(str(ROOT / "pages/1_OOD_detection.py"), default_timeout=TIMEOUT)
    at.session_state["_uploads"] = OrderedDict({"page-npz": ("id.npz", _npz(400, 16))})
    at.session_state["workspace"] = {"model": {"kind": "none"},
                                     "data": {"kind": "upload", "filename": "id.npz", "digest": "page-npz",
                                              "options": {}}}
    at.run()
    # features of another dimension: feature detectors refuse that set, logit detectors still score it
    at.file_uploader(key="ood_upload").set_value(("other.npz", _npz(300, 8, seed=2), "application/octet-stream"))
    at.run()
    at.button(key="ood_run").click().run()
    assert not at.exception
    warnings = " ".join(w.value for w in at.warning)
    assert re.search(r"fitted on outputs with 16-dimensional features, but the outputs to score have "
                     r"8-dimensional features", warnings)
    result = at.session_state["ood_result"]
    assert "energy" in set(result.table["detector"])
    # another number of logits: one message for the set, before any detector runs
    at.file_uploader(key="ood_upload").set_value(("wide.npz", _npz(300, 16, classes=5), "application/octet-stream"))
    at.run()
    at.button(key="ood_run").click().run()
    assert not at.exception
    shown = [e.value for e in at.error] + [w.value for w in at.warning]
    assert sum("5 logits per sample where the model has 3" in m for m in shown) == 1, shown
    # NaN logits: a clear message, earlier results kept
    at.file_uploader(key="ood_upload").set_value(("nan.npz", _npz(300, 16, nan=True), "application/octet-stream"))
    at.run()
    at.button(key="ood_run").click().run()
    assert not at.exception
    text = " ".join(e.value for e in at.error) + " ".join(w.value for w in at.warning)
    assert "NaN" in text
    assert at.session_state["ood_result"] is not None


def test_validation_split_only_where_the_data_has_a_fresh_one():
    from core.ood.workflow import validation_spec

    shapes = {"data": {"kind": "builtin", "name": "shapes", "split": "test", "n": 500, "seed": 0, "shift": "size"}}
    assert validation_spec(shapes, 300) == {"kind": "builtin", "name": "shapes", "split": "val", "n": 300, "seed": 0,
                                            "shift": None}
    table = {"data": {"kind": "builtin", "name": "wine", "split": "test", "n": None, "seed": 0, "shift": None}}
    assert validation_spec(table, 300) is None
    assert validation_spec({"data": {"kind": "upload", "name": "x.zip"}}, 300) is None


def _table_page():
    at = AppTest.from_file(str(ROOT / "pages/1_OOD_detection.py"), default_timeout=TIMEOUT)
    at.session_state["workspace"] = {"model": {"kind": "tabular", "name": "logistic-regression", "seed": 0},
                                     "data": {"kind": "builtin", "name": "breast-cancer", "split": "test", "n": None,
                                              "seed": 0, "shift": None}}
    at.run()
    assert not at.exception
    return at


def test_table_workspace_gets_synthetic_ood_sets_and_csv_uploads():
    import core.data as data

    at = _table_page()
    assert at.multiselect(key="ood_sets").value == ["near: table dependency", "near: table local", "far: table global"]
    # an unlabelled CSV with the same feature columns: far-away rows (every feature ×10)
    test = data.load("breast-cancer", split="test")
    far = test.frame[test.feature_names] * 10.0
    at.file_uploader(key="ood_upload").set_value(("far.csv", far.to_csv(index=False).encode(), "text/csv"))
    at.run()
    at.button(key="ood_run").click().run()
    assert not at.exception
    result = at.session_state["ood_result"]
    assert not result.errors, result.errors
    assert {"near: table dependency", "near: table local", "far: table global", "upload: far.csv"} <= set(result.table["ood_set"])
    t = result.table.set_index(["detector", "ood_set"])["auroc"]
    assert t["mahalanobis", "far: table global"] > 0.9 and t["mahalanobis", "upload: far.csv"] > 0.95
    assert "odin" not in result.detectors  # needs a torch model; explained in a caption


def test_table_ood_upload_missing_a_column_gets_a_message():
    import core.data as data

    at = _table_page()
    test = data.load("breast-cancer", split="test")
    cut = test.frame[test.feature_names[1:]]
    at.file_uploader(key="ood_upload").set_value(("cut.csv", cut.to_csv(index=False).encode(), "text/csv"))
    at.run()
    at.button(key="ood_run").click().run()
    assert not at.exception
    warnings = " ".join(w.value for w in at.warning)
    assert "cut.csv" in warnings and "lacks 1 feature column" in warnings
    assert {"far: table global"} <= set(at.session_state["ood_result"].table["ood_set"])


@pytest.mark.parametrize("raised, shown_as_input_error", [
    (ValueError("operands could not be broadcast together with shapes (3,) (4,)"), False),  # a bug inside numpy
    (ood.OODError("None of the chosen OOD sets could be used: noise: empty"), True),  # the user's input
])
def test_a_bug_is_not_presented_as_an_input_error(monkeypatch, caplog, raised, shown_as_input_error):
    """Only core.errors.UserError reaches the user as 'your input is wrong'. Any other exception, even a
    ValueError raised by a bug, gets the "this is a bug" message, with its traceback in the server log, and the
    earlier results stay."""
    from core.ood import workflow

    def failing(*args, **kwargs):
        raise raised

    monkeypatch.setattr(workflow, "evaluate", failing)
    at = AppTest.from_file(str(ROOT / "pages/1_OOD_detection.py"), default_timeout=TIMEOUT)
    at.run()
    at.session_state["ood_result"] = None
    at.multiselect(key="ood_detectors").set_value(["msp"])
    at.multiselect(key="ood_sets").set_value(["far: noise"])
    with caplog.at_level("ERROR", logger="importance_explorer"):
        at.button(key="ood_run").click().run()
    assert not at.exception, at.exception
    errors = " ".join(e.value for e in at.error)
    assert "earlier results are kept" in errors
    if shown_as_input_error:
        assert str(raised) in errors and "bug" not in errors
        assert not [r for r in caplog.records if r.name.startswith("importance_explorer")]  # no traceback logged
    else:
        assert "this is a bug" in errors and "ValueError" in errors
        assert "broadcast" not in errors  # the bug's message is not shown as if it were about the input
        assert any(r.exc_info and r.exc_info[1] is raised for r in caplog.records)


@pytest.mark.slow
def test_the_exported_notebook_reproduces_the_page_numbers(ran):
    """The Code expander's notebook of the default run, executed offline in a fresh kernel, prints the same
    metrics table as the page shows."""
    import dataclasses

    import nbformat
    import pandas as pd
    from nbclient import NotebookClient

    from core import codegen

    result = ran.session_state["ood_result"]
    code = " ".join(c.value for c in ran.get("code"))
    assert "OODRequest(" in code and "evaluate(resolver, request" in code
    # the default selection (the slow ODIN left out, as the page's default run does)
    default = ood.REGISTRY.default_selection()
    request = dataclasses.replace(result.request, detectors={d: result.params[d] for d in default})
    nb = nbformat.reads(codegen.notebook("ood", request, "OOD detection"), as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("output_type") == "stream")
    table = pd.DataFrame(json.loads(printed))
    page = result.table[result.table["detector"].isin(default)].reset_index(drop=True)
    assert list(table["detector"]) == list(page["detector"]) and list(table["ood_set"]) == list(page["ood_set"])
    for col in ("auroc", "aupr_in", "aupr_out", "fpr95"):
        assert table[col].to_numpy() == pytest.approx(page[col].to_numpy(), abs=1e-9), col
