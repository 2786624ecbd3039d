"""AppTest of pages/4_Attribution.py: the default run (the audit's default request), each view's figures checked
through their plotly specs against the result they draw, exports, Keep and the Code expander, a table workspace,
the confirmation above the cost threshold, methods hidden with their reasons, NaN reporting and the suppressor world."""
import base64
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core import codegen
from core.attribution import workflow
from core.workspace import Resolver, default_workspace

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages/4_Attribution.py")
TIMEOUT = 600
WINE = {"model": {"kind": "tabular", "name": "logistic-regression", "seed": 0},
        "data": {"kind": "builtin", "name": "wine", "split": "test", "n": None, "seed": 0, "shift": None}}


def _charts(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _title(spec: dict) -> str:
    title = spec.get("layout", {}).get("title")
    return (title.get("text") if isinstance(title, dict) else title) or ""


def _chart(at, prefix: str) -> dict:
    found = [s for s in _charts(at) if _title(s).startswith(prefix)]
    assert found, f"no chart titled {prefix!r}: {[_title(s) for s in _charts(at)]}"
    return found[0]


def _array(v) -> np.ndarray:
    """A trace's array: a list, or plotly's typed-array encoding {"dtype", "bdata", "shape"}."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        shape = v.get("shape")
        if shape:
            a = a.reshape([int(s) for s in str(shape).split(",")] if isinstance(shape, str) else shape)
        return a
    return np.asarray(v, dtype=float)


def _texts(at) -> str:
    return " ".join([c.value for c in at.caption] + [w.value for w in at.warning] + [m.value for m in at.markdown])


def _ok(at) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


@pytest.fixture(scope="module")
def ran():
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.run()
    _ok(at)
    assert not at.button(key="attr_run").disabled
    at.button(key="attr_run").click().run()
    _ok(at)
    return at


def test_default_run_is_the_default_request(ran):
    result = ran.session_state["attr_result"]
    request = workflow.default_request(Resolver(), default_workspace())
    # the page's defaults and the audit's default request are one run (one cache entry for both)
    assert result.request == request and result.fingerprint == request.fingerprint
    assert result.methods == ["saliency", "integrated-gradients", "gradcam", "rise"] and not result.errors
    assert len(result.indices) == 4 and result.params["rise"]["masks"] == 500
    text = _texts(ran)
    assert "RISE is slow at its own defaults" in text and "500 masks instead of 2,000" in text
    assert "KernelSHAP is left out by default because" in text and "ReAGent is left out by default" in text
    # methods that do not apply to the shipped ViT are not offered, with the reason
    assert "Feature ablation needs table inputs" in text and "Exact Shapley needs table inputs" in text
    assert "Estimated work:" in text and "forward passes" in text
    # the Code expander shows the snippet of this very request
    assert ran.code[0].value.strip() == codegen.snippet("attribution", request).strip()


def test_heatmap_view(ran):
    result = ran.session_state["attr_result"]
    spec = _chart(ran, "Attribution maps (each method on its own scale)")
    heat = [t for t in spec["data"] if t["type"] == "heatmap"]
    assert len(heat) == 4 * 4  # every sample under every method, nothing NaN
    # per-method scale: each method divided by the 99th percentile of its |values| (the colour bar ends at ±1)
    for j, m in enumerate(result.methods):
        pm = result.pixel_map(m).astype(np.float64)
        q = np.quantile(np.abs(pm), 0.99)
        for i in range(4):
            z = _array(heat[4 * i + j]["z"]).astype(np.float64).reshape(64, 64)
            np.testing.assert_allclose(z, pm[i] / q, rtol=1e-5, atol=1e-6)
    axis = spec["layout"]["coloraxis"]
    assert axis["cmax"] == pytest.approx(1.0) and axis["cmin"] == pytest.approx(-1.0)
    assert "rgba" in axis["colorscale"][3][1]  # transparent at 0: the image shows through
    # the object's outline over the image and every method's map
    assert sum(t["type"] == "contour" for t in spec["data"]) == 4 * 5
    titles = [a["text"] for a in spec["layout"]["annotations"]]
    assert titles[:5] == [workflow.sample_titles(result)[0], "Saliency", "Integrated Gradients", "Grad-CAM", "RISE"]
    # one shared colour scale: the raw values, the scale ending at the 99th percentile of every |value|
    ran.toggle(key="attr_norm").set_value(False).run()
    _ok(ran)
    spec = _chart(ran, "Attribution maps (one shared colour scale)")
    every = np.concatenate([result.pixel_map(m).ravel() for m in result.methods]).astype(np.float64)
    assert spec["layout"]["coloraxis"]["cmax"] == pytest.approx(np.quantile(np.abs(every), 0.99), rel=1e-5)
    z = _array([t for t in spec["data"] if t["type"] == "heatmap"][0]["z"]).reshape(64, 64)
    np.testing.assert_allclose(z, result.pixel_map("saliency")[0], rtol=1e-6)
    ran.radio(key="attr_outline").set_value("none").run()
    assert not any(t["type"] == "contour" for t in _chart(ran, "Attribution maps")["data"])
    ran.toggle(key="attr_norm").set_value(True).run()
    ran.radio(key="attr_outline").set_value("object").run()
    _ok(ran)


def test_distributions_view(ran):
    result = ran.session_state["attr_result"]
    spec = _chart(ran, "Attribution values per method")
    bars = [t for t in spec["data"] if t["type"] == "bar"]
    assert [b["name"] for b in bars] == ["Saliency", "Integrated Gradients", "Grad-CAM", "RISE"]
    for b, m in zip(bars, result.methods):
        assert _array(b["y"]).sum() == pytest.approx(1.0)  # shares of every value
        x = _array(b["x"])
        lo, hi = np.quantile(result.pixel_map(m).astype(np.float64), [0.001, 0.999])
        assert lo - 1e-6 <= x.min() and x.max() <= hi + 1e-6


def test_metrics_view(ran):
    result = ran.session_state["attr_result"]
    summary = result.summary()
    frame = ran.dataframe[0].value
    assert list(frame["method"]) == [workflow.method_label(m) for m in summary["method"]]
    assert frame["method"].iloc[-1] == "random map"
    np.testing.assert_allclose(frame["relevance mass ↑"], summary["relevance_mass"])
    np.testing.assert_allclose(frame["deletion AUC ↓"], summary["deletion_auc"])
    # the random map's localisation is the object's area share
    area = result.masks.reshape(4, -1).mean(1).mean()
    assert frame["relevance mass ↑"].iloc[-1] == pytest.approx(area)
    ranking = " · ".join(f"{k + 1}. {workflow.method_label(m)}" for k, m in enumerate(result.ranking()))
    assert any(ranking in m.value for m in ran.markdown)
    # the corner marker: the share of |attribution| on it, next to its area
    marker = workflow.region_table(result)
    if not marker.empty:
        shown = next(d.value for d in ran.dataframe if "share of |attribution|" in d.value.columns)
        np.testing.assert_allclose(shown["share of |attribution|"], marker["share_abs"])


def test_curves_view(ran):
    result = ran.session_state["attr_result"]
    for kind in ("deletion", "insertion"):
        spec = _chart(ran, kind.capitalize())
        lines = [t for t in spec["data"] if t.get("mode") == "lines"]
        assert [t["name"].split(" (AUC")[0] for t in lines] == ["Saliency", "Integrated Gradients", "Grad-CAM", "RISE",
                                                                 "random map"]
        curve = result.curves["gradcam"][kind]
        np.testing.assert_allclose(_array(lines[2]["y"]), curve.scores.mean(0), rtol=1e-6)
        assert f"AUC {np.trapezoid(curve.scores.mean(0), curve.fractions):.3f}" in lines[2]["name"]


def test_exports_and_keep(ran):
    result = ran.session_state["attr_result"]
    labels = [b.proto.label for b in ran.get("download_button")]
    assert {"Attributions (.npz)", "Attributions (CSV)", "Metrics (CSV)"} <= set(labels)
    ran.button(key="attr_keep").click().run()
    _ok(ran)
    kept = ran.session_state["importances"]
    assert set(kept) == {f"Attribution · {workflow.method_label(m)}" for m in result.methods}
    imp = kept["Attribution · RISE"]
    assert imp.unit == "pixel" and imp.values.shape == (4, 64, 64)
    one = dataclasses.replace(result.request, methods={"rise": {"masks": 500}})
    assert codegen.snippet_from_provenance(imp.provenance) == codegen.snippet("attribution", one)


def test_nan_attributions_are_reported_not_drawn(ran):
    result = ran.session_state["attr_result"]
    maps = dict(result.maps)
    maps["integrated-gradients"] = maps["integrated-gradients"].copy()
    maps["integrated-gradients"][1, 0, 5, 5] = np.nan
    nan = {**result.nan_samples, "integrated-gradients": np.array([False, True, False, False])}
    ran.session_state["attr_result"] = dataclasses.replace(result, maps=maps, nan_samples=nan, fingerprint="nan-test")
    ran.run()
    _ok(ran)
    warning = " ".join(w.value for w in ran.warning)
    assert f"Integrated Gradients gave NaN or infinite attributions on 1 of 4 samples (#{result.indices[1]})" in warning
    spec = _chart(ran, "Attribution maps")
    assert sum(t["type"] == "heatmap" for t in spec["data"]) == 15
    assert sum("NaN in map" in a.get("text", "") for a in spec["layout"]["annotations"]) == 1
    ran.session_state["attr_result"] = result
    ran.run()


def test_confirmation_above_the_threshold():
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.run()
    _ok(at)
    at.number_input(key="attr_n_image").set_value(64).run()
    at.number_input(key="attr_param_rise_masks").set_value(20000).run()
    _ok(at)
    assert at.button(key="attr_run").disabled
    warning = " ".join(w.value for w in at.warning)
    assert "other users of this server wait" in warning and "RISE 1,28" in warning  # 64 × 20,000 masks and the curves
    at.checkbox(key="attr_confirm").check().run()
    assert not at.button(key="attr_run").disabled
    # back under the threshold: no box to tick
    at.number_input(key="attr_param_rise_masks").set_value(500).run()
    at.number_input(key="attr_n_image").set_value(2).run()
    assert not at.get("checkbox") or all(c.key != "attr_confirm" for c in at.checkbox)
    assert not at.button(key="attr_run").disabled


def test_methods_hidden_with_reasons_on_a_cnn():
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["workspace"] = {"model": {"kind": "zoo", "name": "shapes-cnn"}, "data": default_workspace()["data"]}
    at.run()
    _ok(at)
    text = _texts(at)
    assert "Attention rollout needs the attention maps of a timm Vision Transformer" in text and "CNN" in text
    methods = next(m for m in at.multiselect if m.label == "Methods")
    assert "attention-rollout" not in methods.options and "Grad-CAM (class-activation)" in methods.options


def test_table_workspace():
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["workspace"] = WINE
    at.run()
    _ok(at)
    text = _texts(at)
    # gradients need a differentiable model, Grad-CAM an image, exact Shapley at most 12 features
    assert "Saliency needs the gradients of a differentiable torch model" in text
    assert "Grad-CAM needs image inputs" in text and "limited to 12 features; this table has 13" in text
    assert "localisation needs ground-truth object masks" in text
    assert not any(t.key == "attr_suppressor" for t in at.toggle)  # the Shapes world only
    at.button(key="attr_run").click().run()
    _ok(at)
    result = at.session_state["attr_result"]
    assert result.kind == "table" and result.methods == ["feature-ablation", "permutation", "kernelshap"]
    assert result.request == workflow.default_request(Resolver(), WINE) and len(result.indices) == 20
    bars = _chart(at, f"Row #{result.indices[0]}")
    assert [t["name"] for t in bars["data"] if t["type"] == "bar"] == ["Feature ablation", "Permutation", "KernelSHAP"]
    ablation = bars["data"][0]
    values = dict(zip(ablation["y"], _array(ablation["x"])))
    for name, v in values.items():
        assert v == pytest.approx(result.maps["feature-ablation"][0, result.feature_names.index(name)], rel=1e-6)
    glob = _chart(at, "Global importance")
    shap = next(t for t in glob["data"] if t["name"] == "KernelSHAP")
    mean = np.abs(result.maps["kernelshap"].astype(np.float64)).mean(0)
    share = dict(zip(result.feature_names, mean / mean.sum()))
    for name, v in zip(shap["y"], _array(shap["x"])):
        assert v == pytest.approx(share[name], rel=1e-5)
    assert _chart(at, "Deletion") and _chart(at, "Attribution values per method")
    frame = next(d.value for d in at.dataframe if "deletion AUC ↓" in d.value.columns)
    assert "relevance mass ↑" not in frame.columns and frame["method"].iloc[-1] == "random map"


def test_suppressor_world():
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.run()
    _ok(at)
    at.toggle(key="attr_suppressor").set_value(True).run()
    _ok(at)
    assert "not trained on this world" in _texts(at)
    at.radio(key="attr_correctness").set_value("incorrect").run()
    methods = next(m for m in at.multiselect if m.label == "Methods")
    methods.set_value(["saliency", "gradcam"]).run()
    next(m for m in at.multiselect if m.label == "Metrics").set_value(["sparseness"]).run()
    _ok(at)
    at.button(key="attr_run").click().run()
    _ok(at)
    result = at.session_state["attr_result"]
    assert result.request.workspace["data"]["shift"] == "suppressor"
    assert at.session_state["workspace"]["data"]["shift"] is None  # the other pages keep the workspace's data
    # the shipped model predicts the drawn shape: every image it gets wrong shows the next class's shape and the marker
    assert (result.preds != result.labels).all()
    marker = workflow.region_table(result)
    assert list(marker["images"]) == [4, 4]
    shown = next(d.value for d in at.dataframe if "share of |attribution|" in d.value.columns)
    np.testing.assert_allclose(shown["share of |attribution|"], marker["share_abs"])
    assert "In the suppressor world the marker carries no class information" in _texts(at)
