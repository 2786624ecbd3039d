"""AppTest of the views of pages/1_OOD_detection.py: parameter widgets, the results table, the score-distribution
tabs (histogram/ECDF, ROC, threshold, per class, gallery), the downloads, and the messages for unusable OOD sets.

Kept fast: a small .npz workspace (no model) with four array detectors for most views, the Shapes workspace with two
detectors, 300 fit samples and two OOD sets only where images are needed, and a table workspace where built-in OOD
sets must sit next to an upload."""
import io
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ood_npz import npz_outputs
from streamlit.testing.v1 import AppTest

import core.ood as ood
from core.ood.suite import EvalSet, extremes, per_class, run_suite

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages/1_OOD_detection.py")

TIMEOUT = 600
NPZ_DETECTORS = ["msp", "energy", "mahalanobis", "knn"]
SHAPES_SETS = ["near: shapes-near-ood", "far: noise"]


_npz = npz_outputs


def _outputs(n, d, **kw):
    """ModelOutputs of ``_npz`` (through the app's own .npz loader)."""
    from core.data.uploads import load_outputs_npz

    return load_outputs_npz(_npz(n, d, **kw), "x.npz").outputs


def _charts(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _title(spec: dict) -> str:
    title = spec.get("layout", {}).get("title")
    return (title.get("text") if isinstance(title, dict) else title) or ""


def _array(v) -> np.ndarray:
    """A trace's data array: a list, or plotly's typed-array encoding {"dtype", "bdata"} of numpy arrays."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).astype(float)
    return np.asarray(v, float)


def _chart(at, prefix: str) -> dict:
    found = [s for s in _charts(at) if _title(s).startswith(prefix)]
    assert found, f"no chart titled {prefix!r}: {[_title(s) for s in _charts(at)]}"
    return found[0]


def _frame(at, *columns) -> pd.DataFrame:
    """The first st.dataframe holding all ``columns``."""
    for df in at.dataframe:
        value = df.value
        if set(columns) <= set(value.columns):
            return value
    raise AssertionError(f"no dataframe with columns {columns}: {[list(d.value.columns) for d in at.dataframe]}")


def _messages(at) -> str:
    return " ".join(e.value for e in at.error) + " " + " ".join(w.value for w in at.warning)


def _npz_page(digest="views", seed=0) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["_uploads"] = OrderedDict({digest: ("id.npz", _npz(400, 16, seed=seed))})
    at.session_state["workspace"] = {"model": {"kind": "none"},
                                     "data": {"kind": "upload", "filename": "id.npz", "digest": digest, "options": {}}}
    at.run()
    assert not at.exception, at.exception
    return at


def _table_page(seed=0) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["workspace"] = {"model": {"kind": "tabular", "name": "logistic-regression", "seed": seed},
                                     "data": {"kind": "builtin", "name": "breast-cancer", "split": "test", "n": None,
                                              "seed": 0, "shift": None}}
    at.run()
    assert not at.exception, at.exception
    return at


def _npz_run(digest="views") -> AppTest:
    """.npz workspace (model kind "none"), one uploaded near-OOD set, four array detectors, run once."""
    at = _npz_page(digest=digest)
    at.multiselect(key="ood_detectors").set_value(NPZ_DETECTORS)
    at.file_uploader(key="ood_upload").set_value(("near.npz", _npz(300, 16, seed=1, scale=0.5),
                                                  "application/octet-stream"))
    at.run()
    at.button(key="ood_run").click().run()
    assert not at.exception, at.exception
    result = at.session_state["ood_result"]
    assert result.detectors == NPZ_DETECTORS and not result.errors, result.errors
    return at


@pytest.fixture(scope="module")
def npz():
    return _npz_run()


@pytest.fixture(scope="module")
def shapes():
    """The default Shapes workspace (images), two detectors, 300 fit samples, a near and a far set."""
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    at.multiselect(key="ood_sets").set_value(SHAPES_SETS)
    at.multiselect(key="ood_detectors").set_value(["msp", "energy"])
    at.number_input(key="ood_n_fit").set_value(300)
    at.run()
    at.button(key="ood_run").click().run()
    assert not at.exception, at.exception
    result = at.session_state["ood_result"]
    assert result.detectors == ["msp", "energy"] and not result.errors, result.errors
    assert set(result.table["ood_set"]) == set(SHAPES_SETS)
    return at


# ---------------------------------------------------------------- 1. parameter widgets
def _all_param_controls():
    import streamlit as st

    import core.ood as ood
    from ui.ood import param_controls

    st.session_state["values"] = {d: param_controls(d) for d in ood.available()}


def test_untouched_parameter_widgets_give_every_detectors_defaults():
    at = AppTest.from_function(_all_param_controls, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    values = at.session_state["values"]
    assert set(values) == set(ood.available())
    for d in ood.available():
        defaults = ood.spec(d).defaults
        assert values[d] == defaults, (d, values[d], defaults)
        for name, v in values[d].items():  # no 50.0 for an int, no False for "automatic"
            assert type(v) is type(defaults[name]), (d, name, v, defaults[name])
    # an optional bool (WDiscOOD's normalize, default None) is a three-way auto/on/off choice
    assert ood.spec("wdiscood").defaults["normalize"] is None
    box = at.selectbox(key="ood_param_wdiscood_normalize")
    assert box.options == ["auto", "on", "off"] and box.value is None
    box.set_value(True).run()
    assert at.session_state["values"]["wdiscood"]["normalize"] is True
    at.selectbox(key="ood_param_wdiscood_normalize").set_value(False).run()
    assert at.session_state["values"]["wdiscood"]["normalize"] is False


def _vim_controls_capped():
    import streamlit as st

    from ui.ood import param_controls

    st.session_state["values"] = param_controls("vim", caps={"dim": 95})


def test_data_limited_parameters_are_capped_at_the_widget():
    at = AppTest.from_function(_vim_controls_capped, default_timeout=TIMEOUT)
    at.run()
    dim = at.number_input(key="ood_param_vim_dim")
    assert dim.max == 95 and dim.value is None  # automatic stays the default
    dim.set_value(95).run()
    assert at.session_state["values"]["dim"] == 95


# ---------------------------------------------------------------- 2. results table
def test_results_table_shows_group_averages_of_the_chosen_metric(shapes):
    at = shapes
    try:
        _check_results_table(at)
    finally:  # the module's other tests see the default table
        at.radio(key="ood_table_metric").set_value("auroc").run()


def _check_results_table(at):
    groups = ["near", "far"]
    assert at.radio(key="ood_table_metric").value == "auroc"
    cols = list(_frame(at, "detector", "name", "auroc_mean").columns)
    assert {"auroc_near", "auroc_far", "aupr_in_mean", "aupr_out_mean", "fpr95_mean", "fit_s", "score_s"} <= set(cols)
    assert not any(c.startswith("fpr95_") and c != "fpr95_mean" for c in cols), cols
    at.radio(key="ood_table_metric").set_value("fpr95").run()
    assert not at.exception, at.exception
    table = _frame(at, "detector", "name", "fpr95_mean")
    assert {"fpr95_near", "fpr95_far", "auroc_mean"} <= set(table.columns)
    assert not any(c.startswith("auroc_") and c != "auroc_mean" for c in table.columns), list(table.columns)
    # the shown numbers are the summary's
    result = at.session_state["ood_result"]
    t = result.table
    for _, row in table.iterrows():
        mine = t[t.detector == row["detector"]]
        assert row["fpr95_near"] == pytest.approx(mine[mine.group == "near"]["fpr95"].mean())
    assert table["fpr95_mean"].is_monotonic_increasing  # sorted by the chosen metric, best (lowest FPR) first
    # the summary itself has every metric's mean per group
    summary = result.summary()
    for key in ("auroc", "aupr_in", "aupr_out", "fpr95"):
        for g in groups:
            assert f"{key}_{g}" in summary.columns
            for _, row in summary.iterrows():
                mine = t[(t.detector == row["detector"]) & (t.group == g)]
                assert row[f"{key}_{g}"] == pytest.approx(mine[key].mean())


# ---------------------------------------------------------------- 3. score distributions
def test_ecdf_draws_lines(npz):
    at = npz
    at.selectbox(key="ood_view_det").set_value("energy").run()
    hist = _chart(at, "Energy scores")
    assert {t["type"] for t in hist["data"]} == {"bar"}
    at.radio(key="ood_hist_kind").set_value("ecdf").run()
    assert not at.exception, at.exception
    ecdf = _chart(at, "Energy scores")
    assert ecdf["data"] and all(t["type"] == "scatter" and t["mode"] == "lines" for t in ecdf["data"])
    assert len(ecdf["data"]) == 2  # ID and the uploaded set
    for t in ecdf["data"]:  # an empirical CDF rises from 0 to 1
        y = _array(t["y"])
        assert np.all(np.diff(y) >= 0) and y[-1] == pytest.approx(1.0)
    at.radio(key="ood_hist_kind").set_value("histogram").run()


# ---------------------------------------------------------------- 4. ROC curves
def test_roc_every_detector_on_one_set(npz):
    at = npz
    at.selectbox(key="ood_view_det").set_value("msp").run()
    per_set = _chart(at, "ROC of MSP")
    assert [t.get("name") for t in per_set["data"] if t.get("showlegend", True)] == ["upload: near.npz"]
    at.radio(key="ood_roc_mode").set_value("every detector on one OOD set").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="ood_roc_set").value == "upload: near.npz"
    roc = _chart(at, "ROC on upload: near.npz")
    traces = [t for t in roc["data"] if t.get("showlegend", True)]
    names = [t.get("name") for t in sorted(traces, key=lambda t: t.get("legendrank", 1000))]
    assert names == [ood.spec(d).name for d in NPZ_DETECTORS]  # the legend keeps the detectors' order
    assert traces[-1]["name"] == "MSP" and traces[-1]["line"]["width"] == 4  # the detector in view, on top
    at.radio(key="ood_roc_mode").set_value("this detector on every OOD set").run()


# ---------------------------------------------------------------- 5. threshold
def test_threshold_slider_drives_the_flagged_counts(npz):
    at = npz
    det = "energy"
    at.selectbox(key="ood_view_det").set_value(det).run()
    scores = at.session_state["ood_result"].scores[det]
    slider = at.slider(key=f"ood_thr_{det}")
    # default: keeps 95% of the ID samples
    assert slider.value == pytest.approx(np.quantile(scores["ID"], 0.05))
    before = _frame(at, "set", "n", "flagged").set_index("set")
    assert before.loc["ID", "n"] == len(scores["ID"])
    assert before.loc["ID", "flagged"] == (scores["ID"] <= slider.value).sum()
    # an ID score itself as the threshold: flagged at or below it
    thr = float(np.sort(scores["ID"])[len(scores["ID"]) // 2])
    at.slider(key=f"ood_thr_{det}").set_value(thr).run()
    assert not at.exception, at.exception
    thr = at.slider(key=f"ood_thr_{det}").value
    after = _frame(at, "set", "n", "flagged").set_index("set")
    expected = int((scores["ID"] <= thr).sum())
    assert after.loc["ID", "flagged"] == expected and expected != before.loc["ID", "flagged"]
    assert after.loc["ID", "share flagged"] == pytest.approx(expected / len(scores["ID"]))
    far = scores["upload: near.npz"]
    assert after.loc["upload: near.npz", "flagged"] == (far <= thr).sum()
    # the threshold line is drawn at it
    shapes = [s for c in _charts(at) for s in c.get("layout", {}).get("shapes", [])]
    assert any(s.get("x0") == pytest.approx(thr) for s in shapes)


# ---------------------------------------------------------------- 6. per class
def test_per_class_table_lists_the_id_classes(npz):
    at = npz
    det = "msp"  # separates the near set from some classes better than from others
    at.selectbox(key="ood_view_det").set_value(det).run()
    result = at.session_state["ood_result"]
    box = at.selectbox(key="ood_pc_set")
    assert box.options == ["all OOD sets pooled", "upload: near.npz"]
    for target in box.options:
        at.selectbox(key="ood_pc_set").set_value(target).run()
        assert not at.exception, at.exception
        table = _frame(at, "class", "n", "auroc")
        assert list(table["class"]) == ["0", "1", "2"]
        assert table["auroc"].between(0, 1).all() and table["n"].sum() == len(result.scores[det]["ID"])
        id_out = result.id_outputs
        want = per_class(result.scores[det]["ID"], id_out.labels, ["0", "1", "2"], result.scores[det]["upload: near.npz"])
        assert table["auroc"].to_numpy() == pytest.approx(want["auroc"].to_numpy())
        assert table["auroc"].max() - table["auroc"].min() > 0.1  # the classes differ, so the check above bites
    assert _chart(at, "AUROC of each ID class")


# ---------------------------------------------------------------- 7. gallery
def test_gallery_shows_the_extreme_images_with_their_scores(shapes):
    at = shapes
    det = "energy"
    at.selectbox(key="ood_view_det").set_value(det).run()
    assert not at.exception, at.exception
    images = at.image  # st.image elements (AppTest's type "imgs"; at.get("imgs") finds none)
    captions = [c for im in images for c in im.captions]
    most, least = extremes(at.session_state["ood_result"].scores[det], k=8)
    from ui.ood import score_format

    fmt = score_format([v for _, _, v in most + least])
    assert captions == [f"{s} · {v:{fmt}}" for s, _, v in most + least]
    numbers = [c.rsplit(" · ", 1)[1] for c in captions]
    decimals = {len(n.split(".")[1]) if "." in n else 0 for n in numbers}
    assert len(decimals) == 1  # every caption has the same number of decimals
    assert all(u for im in images for u in im.value)  # every image has a URL


# ---------------------------------------------------------------- 8. downloads
def test_downloads_hold_scores_metrics_and_summary(shapes, monkeypatch):
    """The files are built on click (deferred callables: no CSV is built on a run). AppTest exposes only the
    button's deferred file id; record the callable the page registers under it and call it as a click does."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    deferred = {}
    original = MediaFileManager.add_deferred

    def recording(self, data_callable, mimetype, coordinates, file_name=None, **kw):
        file_id = original(self, data_callable, mimetype, coordinates, file_name, **kw)
        deferred[file_id] = (file_name, data_callable)
        return file_id

    monkeypatch.setattr(MediaFileManager, "add_deferred", recording)
    at = shapes
    at.run()
    assert not at.exception, at.exception
    buttons = {b.key: b for b in at.get("download_button")}
    assert {"ood_dl_scores", "ood_dl_metrics", "ood_dl_summary"} <= set(buttons)

    def csv(key):
        assert not buttons[key].proto.url  # nothing built before the click
        filename, build = deferred[buttons[key].proto.deferred_file_id]
        assert filename.endswith(".csv")
        return pd.read_csv(io.BytesIO(build()))

    result = at.session_state["ood_result"]
    scores = csv("ood_dl_scores")
    assert len(scores) == sum(len(v) for per_set in result.scores.values() for v in per_set.values())
    assert set(scores["set"]) == {"ID", *SHAPES_SETS} and set(scores["detector"]) == {"msp", "energy"}
    energy_id = scores[(scores.detector == "energy") & (scores.set == "ID")].sort_values("index")["score"]
    assert energy_id.to_numpy() == pytest.approx(result.scores["energy"]["ID"])
    metrics = csv("ood_dl_metrics")
    assert len(metrics) == len(result.table) == 4
    assert metrics["auroc"].to_numpy() == pytest.approx(result.table["auroc"].to_numpy())
    summary = csv("ood_dl_summary")
    assert list(summary["detector"]) == list(result.summary()["detector"])
    assert {f"{k}_{g}" for k in ("auroc", "aupr_in", "aupr_out", "fpr95") for g in ("near", "far")} <= set(summary.columns)


# ---------------------------------------------------------------- 9. an empty OOD set
def test_an_empty_ood_set_gets_a_message_and_the_others_still_run():
    train, test, far = _outputs(300, 16, seed=3), _outputs(200, 16, seed=4), _outputs(150, 16, ood=True, seed=5)
    sets = {"ID": EvalSet(test, "id"), "far: fine": EvalSet(far, "far"),
            "far: empty": EvalSet(far.subset(np.arange(0)), "far")}
    result = run_suite(train, sets, "ID", {d: {} for d in NPZ_DETECTORS})
    assert not result.errors, result.errors
    assert "no samples" in result.set_errors["far: empty"]
    assert set(result.table["ood_set"]) == {"far: fine"} and len(result.table) == len(NPZ_DETECTORS)
    assert result.table["auroc"].between(0, 1).all()
    # the page shows that message next to the results of the other set
    at = _npz_page()
    at.session_state["ood_result"] = result
    at.run()
    assert not at.exception, at.exception
    warnings = " ".join(w.value for w in at.warning)
    assert "far: empty" in warnings and "no samples" in warnings
    assert list(_frame(at, "detector", "name", "auroc_mean")["detector"]) == list(result.summary()["detector"])


# ---------------------------------------------------------------- 10. NaN logits in one uploaded OOD set
def test_nan_upload_gets_a_message_and_the_built_in_sets_still_run():
    at = _table_page()
    at.multiselect(key="ood_detectors").set_value(["msp", "energy", "mahalanobis"])
    at.file_uploader(key="ood_upload").set_value(("nan.npz", _npz(100, 30, classes=2, nan=True),
                                                  "application/octet-stream"))
    at.run()
    at.button(key="ood_run").click().run()
    assert not at.exception, at.exception
    problems = [m for m in (*(e.value for e in at.error), *(w.value for w in at.warning)) if "nan.npz" in m]
    assert problems and any("NaN" in m for m in problems), _messages(at)
    result = at.session_state["ood_result"]
    builtin = {"near: table dependency", "near: table local", "far: table global"}
    assert set(result.table["ood_set"]) == builtin
    for det in ("msp", "energy", "mahalanobis"):
        assert set(result.table[result.table.detector == det]["ood_set"]) == builtin
    assert result.table["auroc"].between(0, 1).all()


# ---------------------------------------------------------------- 11. re-running does not re-run the model
def test_changing_detectors_and_running_again_reuses_the_model_outputs(monkeypatch):
    """The page reaches the model only through core.workspace.Resolver.outputs, which calls the module attribute
    ``core.workspace.extract_run`` (core.extract.run) on a cache miss. AppTest runs the page in this process with the
    already imported core.workspace, so wrapping that attribute counts every model run. A tabular model with a seed no
    other test uses keeps the shared (process-wide) outputs cache from hiding the first run's extractions."""
    import core.workspace as wsp
    from ui.cache import outputs_cache

    calls = []
    original = wsp.extract_run

    def counting(model, dataset, *args, **kwargs):
        calls.append(dataset.name)
        return original(model, dataset, *args, **kwargs)

    monkeypatch.setattr(wsp, "extract_run", counting)
    at = _table_page(seed=20231)
    at.multiselect(key="ood_detectors").set_value(["msp", "energy"])
    at.run()
    at.button(key="ood_run").click().run()
    assert not at.exception, at.exception
    first = at.session_state["ood_result"]
    assert len(calls) >= 4, calls  # the ID test split, the train split (fit) and the table's OOD sets
    n_calls, n_cached = len(calls), len(outputs_cache())
    at.multiselect(key="ood_detectors").set_value(["msp", "mahalanobis", "knn"])
    at.run()
    at.button(key="ood_run").click().run()
    assert not at.exception, at.exception
    second = at.session_state["ood_result"]
    assert second is not first and second.detectors == ["msp", "mahalanobis", "knn"], second.errors
    assert len(calls) == n_calls, calls[n_calls:]
    assert len(outputs_cache()) == n_cached
    assert second.id_outputs is first.id_outputs  # the very same cached outputs


# ---------------------------------------------------------------- 10. convention and stale settings
def test_convention_applies_at_once_and_changed_settings_are_flagged():
    at = _npz_run(digest="stale")

    def stale():
        return any("changed since these results" in i.value for i in at.info)

    before = at.session_state["ood_result"]
    assert before.convention == "ood-positive" and not stale()
    # the FPR@95 convention is recomputed from the kept scores, without a run
    at.radio(key="ood_convention").set_value("id-positive").run()
    assert not at.exception, at.exception
    after = at.session_state["ood_result"]
    assert after.convention == "id-positive" and after.scores is before.scores and not stale()
    shown = _frame(at, "fpr95_mean").set_index("detector")["fpr95_mean"]
    want = after.summary().set_index("detector")["fpr95_mean"]
    assert shown.to_numpy() == pytest.approx(want[shown.index].to_numpy())
    assert not np.allclose(want, before.summary().set_index("detector")["fpr95_mean"][want.index])
    assert any("id-positive convention" in c.value for c in at.caption)
    # other settings are only applied by a run; until then the page says the results are out of date
    at.selectbox(key="ood_view_det").set_value("energy").run()
    at.multiselect(key="ood_detectors").set_value(NPZ_DETECTORS[:2]).run()
    assert stale()
    at.button(key="ood_run").click().run()
    assert not stale() and at.session_state["ood_result"].detectors == NPZ_DETECTORS[:2]
    assert at.selectbox(key="ood_view_det").value == "energy"  # the detector in view stays in view


# ---------------------------------------------------------------- 11. adding a set reuses fitted detectors
def test_adding_an_ood_set_scores_only_that_set(scored_sets):
    scored = scored_sets
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.run()
    at.multiselect(key="ood_sets").set_value(SHAPES_SETS[:1])
    at.multiselect(key="ood_detectors").set_value(["msp", "mahalanobis"])
    at.number_input(key="ood_n_fit").set_value(310)  # a fit set no other test uses, so nothing is cached yet
    at.run()
    at.button(key="ood_run").click().run()
    assert not at.exception, at.exception
    assert len(scored) == 4  # two detectors × (ID + one OOD set)
    scored.clear()
    at.multiselect(key="ood_sets").set_value(SHAPES_SETS).run()
    at.button(key="ood_run").click().run()
    assert not at.exception, at.exception
    assert sorted(scored) == [("mahalanobis", SHAPES_SETS[1]), ("msp", SHAPES_SETS[1])]
    assert set(at.session_state["ood_result"].table["ood_set"]) == set(SHAPES_SETS)


def test_summary_headers_are_readable():
    from ui.ood import summary_labels

    cols = ["detector", "name", "auroc_mean", "auroc_near", "aupr_in_mean", "fpr95_far", "sets", "fit_s", "score_s"]
    labels = {c: cfg["label"] for c, cfg in summary_labels(cols).items()}
    assert labels == {"detector": "id", "name": "detector", "auroc_mean": "AUROC mean", "auroc_near": "AUROC near",
                      "aupr_in_mean": "AUPR-In mean", "fpr95_far": "FPR@95 far", "sets": "sets", "fit_s": "fit s",
                      "score_s": "score s"}
    assert "lower is better" in summary_labels(["fpr95_mean"])["fpr95_mean"]["help"]


def _editor():
    import streamlit as st

    from ui.ood import parameter_editor

    st.session_state["values"] = parameter_editor(["knn", "vim", "msp"], None)


def test_parameter_editor_draws_one_detector_and_keeps_the_others_values():
    at = AppTest.from_function(_editor, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["values"] == {d: ood.spec(d).defaults for d in ("knn", "vim", "msp")}
    k_key = next(w.key for w in at.number_input if w.key.startswith("ood_param_knn_"))
    assert not any(w.key.startswith("ood_param_vim_") for w in at.number_input)  # only the picked detector's controls
    k_name = k_key.removeprefix("ood_param_knn_")
    at.number_input(key=k_key).set_value(7).run()
    assert at.session_state["values"]["knn"][k_name] == 7
    at.selectbox(key="ood_param_detector").set_value("vim").run()  # knn's controls are gone, its value is kept
    assert not any(w.key.startswith("ood_param_knn_") for w in at.number_input)
    assert at.session_state["values"]["knn"][k_name] == 7 and at.session_state["values"]["vim"] == ood.spec("vim").defaults
    at.selectbox(key="ood_param_detector").set_value("knn").run()  # and its control starts from it again
    assert at.number_input(key=k_key).value == 7 and at.session_state["values"]["knn"][k_name] == 7
