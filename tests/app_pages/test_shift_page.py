"""AppTests of pages/3_Shift_attribution.py: the default run (the Shapes world's background preset against the
unshifted world, on the default workspace), each view, keeping the result, the graph editor, a table
workspace, and bad input shown as messages with earlier results kept."""
import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import codegen
from core.shift import workflow as wf
from core.workspace import Resolver, default_workspace

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages/3_Shift_attribution.py")
TIMEOUT = 600
TABLE_WS = {"model": {"kind": "tabular", "name": "logistic-regression", "seed": 0},
            "data": {"kind": "builtin", "name": "breast-cancer", "split": "test", "n": None, "seed": 0, "shift": None}}


def charts(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def values(x) -> list:
    """A plotly array from a chart's JSON: plain lists, or typed arrays ({"dtype", "bdata"}) as plotly writes numpy."""
    if isinstance(x, dict) and "bdata" in x:
        return np.frombuffer(base64.b64decode(x["bdata"]), dtype=x["dtype"]).tolist()
    return list(x)


def errors(at) -> str:
    return " ".join(e.value for e in at.error)


@pytest.fixture(scope="module")
def ran():
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    assert at.radio(key="shift_sides").value == "preset" and at.selectbox(key="shift_preset").value == "background"
    assert at.selectbox(key="shift_metric").value == "log_loss" and at.number_input(key="shift_n_boot").value == 200
    at.button(key="shift_run").click().run()
    assert not at.exception, at.exception
    assert not at.error, errors(at)
    return at


def test_default_run_attributes_the_background_shift_to_the_background(ran):
    result = ran.session_state["shift_result"]
    # the page's default is the default request of the core (the audit and a notebook run the same)
    assert result.fingerprint == wf.default_request(Resolver(), default_workspace()).fingerprint
    e = result.explanation
    assert e.changed_mechanisms == ["background"]
    assert sum(e.attributions.values()) == pytest.approx(e.total, abs=1e-9)
    assert e.significant and e.attributions["background"] / e.total >= 0.8
    assert any("ground truth" in s.value and "P(background)" in s.value for s in ran.success)
    metrics = {m.label: m.value for m in ran.metric}
    assert metrics["Log loss on the source"] == f"{e.source_performance:.4g}"
    # textured backgrounds never occur in the source: it covers almost none of the target, and the page says so
    assert result.source_coverage < 0.05 and metrics["Target mass the source covers"] == f"{result.source_coverage:.1%}"


def test_waterfall_steps_add_up_to_the_target_with_intervals(ran):
    e = ran.session_state["shift_result"].explanation
    waterfall = next(s for s in charts(ran) if s["data"][0]["type"] == "waterfall")
    w = waterfall["data"][0]
    assert w["x"][0] == "source" and w["x"][-1] == "target" and w["x"][1:-1] == [m.name for m in e.mechanisms]
    y = values(w["y"])
    assert y[0] == pytest.approx(e.source_performance)
    assert y[0] + sum(y[1:-1]) == pytest.approx(y[-1]) == pytest.approx(e.target_performance)
    bars = [t for t in waterfall["data"][1:] if "error_y" in t]
    assert bars and len(values(bars[0]["x"])) == len(e.mechanisms)  # one interval per mechanism, and the total's


def test_each_view_is_drawn(ran):
    e = ran.session_state["shift_result"].explanation
    tabs = [t.label for t in ran.tabs]
    assert tabs == ["Attributions", "Importance weights", "Drift per column", "Most target-like samples",
                    "Diagnostics"]
    specs = charts(ran)
    kinds = [s["data"][0]["type"] for s in specs]
    assert kinds.count("bar") == 2 and "scatter" in kinds  # weight histogram, drift bars, reliability curves
    hist = next(s for s in specs if "Importance weights" in s["layout"]["title"]["text"])
    assert sum(values(hist["data"][0]["y"])) == e.n_source and "ESS" in hist["layout"]["title"]["text"]
    drift = next(s for s in specs if s["layout"]["title"]["text"] == "Drift per column")
    assert values(drift["data"][0]["y"])[-1] in ("bg_type", "bg_val", "bg_hue")  # the largest effect is drawn on top
    frames = [d.value for d in ran.dataframe]
    attributions = next(f for f in frames if "attribution" in f.columns)
    assert list(attributions["mechanism"]) == [m.name for m in e.mechanisms]
    drift_table = next(f for f in frames if "effect size" in f.columns)
    assert drift_table["effect size"].is_monotonic_decreasing
    classifiers = next(f for f in frames if "classifier on" in f.columns)
    assert classifiers.set_index("classifier on").loc["background", "AUC"] > 0.9
    assert classifiers.set_index("classifier on").loc["rotation", "AUC"] < 0.7
    assert classifiers.set_index("classifier on").loc["all variables (C2ST)", "AUC"] > 0.9
    images = ran.get("image")
    assert len(images) == 16  # the most target-like source images
    assert any("barely overlap" in w.value for w in ran.warning)  # textures never occur in the source
    downloads = [b.proto.label for b in ran.get("download_button")]
    assert {"Attributions (CSV)", "Weights (CSV)", "Summary (JSON)"} <= set(downloads)
    assert any("ShiftRequest(" in c.value for c in ran.code)


def test_keep_stores_mechanisms_and_sample_weights_with_a_rebuildable_request(ran):
    ran.button(key="shift_keep").click().run()
    assert not ran.exception
    kept = list(ran.session_state["importances"].values())
    units = sorted(k.unit for k in kept)
    assert units == ["mechanism", "sample"]
    mech = next(k for k in kept if k.unit == "mechanism")
    result = ran.session_state["shift_result"]
    assert mech.names[2] == "P(background)"
    assert codegen.snippet_from_provenance(mech.provenance) == codegen.snippet("shift", result.request)


def test_another_metric_reuses_the_fitted_ratios_and_old_results_stay_until_rerun(ran):
    before = ran.session_state["shift_result"]
    ran.selectbox(key="shift_metric").set_value("accuracy").run()
    assert not ran.exception
    assert ran.session_state["shift_result"] is before
    assert any("changed since these results" in i.value for i in ran.info)
    ran.button(key="shift_run").click().run()
    assert not ran.exception
    after = ran.session_state["shift_result"].explanation
    assert after.metric == "accuracy" and after.diagnostics.timings.cached_classifiers > 0
    assert not any("changed since these results" in i.value for i in ran.info)


def test_graph_presets_reset_the_editor(ran):
    ran.button(key="shift_graph_preset_1").click().run()  # all marginals
    assert not ran.exception
    caption = next(c.value for c in ran.caption if "mechanisms, exact Shapley" in c.value)
    assert "P(colour)" in caption and "P(colour | class)" not in caption
    table = ran.session_state["shift_graph"]["table"]
    assert (table["parents"] == "").all()
    ran.button(key="shift_graph_preset_0").click().run()
    assert "P(colour | class)" in next(c.value for c in ran.caption if "mechanisms, exact Shapley" in c.value)


def _set_graph(at, rows: list[dict]) -> None:
    """Put a table into the graph editor, as a user's edits would (the editor starts from this table)."""
    state = at.session_state["shift_graph"]
    at.session_state["shift_graph"] = {"scenario": state["scenario"], "table": pd.DataFrame(rows),
                                       "version": state["version"] + 1}


@pytest.mark.parametrize("rows, message", [
    ([{"node": "class", "parents": "colour", "columns": "label"},
      {"node": "colour", "parents": "class", "columns": "hue, sat, val"}], "The graph has a cycle: "),
    ([{"node": "class", "parents": "", "columns": "label"},
      {"node": "colour", "parents": "class", "columns": "hue, shininess"}], "names column(s) 'shininess'"),
])
def test_bad_graphs_are_refused_and_the_earlier_result_is_kept(ran, rows, message):
    before = ran.session_state["shift_result"]
    _set_graph(ran, rows)
    ran.run()
    assert not ran.exception
    assert message in errors(ran) and "This graph cannot be used" in errors(ran)
    assert ran.button(key="shift_run").disabled
    assert ran.session_state["shift_result"] is before  # nothing lost: the last result is still shown
    assert any(c["data"][0]["type"] == "waterfall" for c in charts(ran))
    ran.button(key="shift_graph_preset_0").click().run()  # back to the recorded graph
    assert not ran.error


# ---------------------------------------------------------------- a table workspace
@pytest.fixture(scope="module")
def table_page():
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["workspace"] = TABLE_WS
    at.run()
    assert not at.exception, at.exception
    assert at.radio(key="shift_sides").options == ["the table's train split vs its test split",
                                                    "the workspace's rows vs a subgroup (a filter on a column)",
                                                    "two uploads"]
    at.button(key="shift_run").click().run()
    assert not at.exception and not at.error, errors(at)
    return at


def test_table_workspace_compares_its_splits_and_shows_rows(table_page):
    e = table_page.session_state["shift_result"].explanation
    assert e.nodes == ["target", "features"] and e.n_target == 142
    assert any(c["data"][0]["type"] == "waterfall" for c in charts(table_page))
    rows = next(d.value for d in table_page.dataframe if "source row" in d.value.columns)
    assert len(rows) == 16 and "mean radius" in rows.columns and rows["weight"].is_monotonic_decreasing


def test_a_filter_on_a_column_explains_a_subgroup(table_page):
    at = table_page
    at.radio(key="shift_sides").set_value("filter").run()
    at.selectbox(key="shift_filter_column").set_value("mean radius").run()
    at.number_input(key="shift_filter_value_mean radius").set_value(13.0).run()
    at.button(key="shift_run").click().run()
    assert not at.exception and not at.error, errors(at)
    result = at.session_state["shift_result"]
    assert result.request.target_where == {"column": "mean radius", "op": ">=", "value": 13.0}
    assert result.target_name.endswith("where mean radius >= 13.0")


@pytest.mark.parametrize("where, message", [
    ({"column": "target", "cls": 0}, "The target holds a single class"),
    ({"column": "mean smoothness", "value": 0.1218}, "Too few samples for the domain classifiers"),
])
def test_filters_leaving_one_class_or_too_few_rows_are_explained(table_page, where, message):
    at = table_page
    before = at.session_state["shift_result"]
    at.radio(key="shift_sides").set_value("filter").run()
    at.selectbox(key="shift_filter_column").set_value(where["column"]).run()
    if "cls" in where:
        at.selectbox(key="shift_filter_class").set_value(where["cls"]).run()
    else:
        at.number_input(key=f"shift_filter_value_{where['column']}").set_value(where["value"]).run()
    at.button(key="shift_run").click().run()
    assert not at.exception
    assert message in errors(at) and "earlier results are kept" in errors(at)
    assert at.session_state["shift_result"] is before


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


@pytest.mark.parametrize("case, message", [
    ("different columns", "Source and target must have the same columns; only in the source: mean radius"),
    ("label missing", "The label column 'target' is missing from the target"),
])
def test_bad_uploads_are_refused_with_what_to_fix(table_page, case, message):
    at = table_page
    before = at.session_state["shift_result"]
    test = Resolver().load_data(TABLE_WS["data"]).frame
    target = test.drop(columns=["mean radius"] if case == "different columns" else ["target"])
    at.radio(key="shift_sides").set_value("uploads").run()
    at.file_uploader(key="shift_upload_source").set_value(("source.csv", _csv(test), "text/csv"))
    at.file_uploader(key="shift_upload_target").set_value(("target.csv", _csv(target), "text/csv"))
    at.run()
    assert not at.exception
    assert message in errors(at) and "cannot be compared" in errors(at)
    assert at.button(key="shift_run").disabled and at.session_state["shift_result"] is before


def test_kept_results_open_on_the_importance_page(ran):
    ran.button(key="shift_keep").click().run()  # keeping again adds no copies
    kept = ran.session_state["importances"]
    at = AppTest.from_file(str(ROOT / "pages/9_Importance_distributions.py"), default_timeout=TIMEOUT)
    at.session_state["importances"] = kept
    at.run()
    assert not at.exception, at.exception
    assert not at.error, errors(at)
    assert len(at.get("plotly_chart")) >= 1


def _npz(n: int, seed: int, prior) -> bytes:
    """Stored outputs without metadata: class clusters and a fixed linear head (the label prior ``prior``)."""
    import io

    rng = np.random.default_rng(seed)
    mu = np.zeros((3, 12))
    mu[0, 0], mu[1, 1], mu[2, 1], mu[2, 2] = 2.5, 2.5, 1.5, 1.5
    y = rng.choice(3, n, p=prior)
    x = mu[y] + rng.normal(size=(n, 12))
    buf = io.BytesIO()
    np.savez(buf, logits=x @ mu.T - 0.5 * (mu ** 2).sum(1), features=x, labels=y)
    return buf.getvalue()


def test_two_uploaded_outputs_split_label_shift_from_feature_shift():
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.run()
    at.radio(key="shift_sides").set_value("uploads").run()
    assert any("Upload a source and a target" in i.value for i in at.info)
    assert at.button(key="shift_run").disabled
    at.file_uploader(key="shift_upload_source").set_value(("source.npz", _npz(1500, 1, (1 / 3, 1 / 3, 1 / 3)),
                                                           "application/octet-stream"))
    at.file_uploader(key="shift_upload_target").set_value(("target.npz", _npz(1500, 2, (0.7, 0.2, 0.1)),
                                                           "application/octet-stream"))
    at.run()
    assert not at.exception and not at.error, errors(at)
    table = at.session_state["shift_graph"]["table"]
    assert list(table["node"]) == ["label", "features"]
    at.button(key="shift_run").click().run()
    assert not at.exception and not at.error, errors(at)
    e = at.session_state["shift_result"].explanation
    assert e.attributions["label"] / e.total >= 0.8  # the target was drawn with another class prior only
    rows = next(d.value for d in at.dataframe if "source_row" in d.value.columns)
    assert list(rows.columns) == ["source_row", "weight", "label", "prediction"] and len(rows) == 16
