"""AppTest of pages/2_Token_pruning.py: the default run (the audit's default request), each view's figures checked
through their plotly specs against the result they draw, Keep, the CNN message and switch, and impossible budgets."""
import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import core.pruning as pruning
import core.viz.pruning as vz
from core.pruning import workflow
from core.workspace import Resolver, default_workspace

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages/2_Token_pruning.py")
TIMEOUT = 600


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
    return np.asarray(v)


@pytest.fixture(scope="module")
def ran():
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    at.button(key="prune_run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def test_default_run_is_the_default_request(ran):
    result = ran.session_state["prune_result"]
    request = workflow.default_request(Resolver(), default_workspace())
    # the page's defaults and the audit's default request are one run (one cache entry for both)
    assert result.request == request and result.fingerprint == request.fingerprint
    assert [p.label for p in result.points] == [f"{n} −{b}%" for n in ("Zero-TPrune", "ToMe", "EViT", "Random")
                                                for b in (20, 35)]
    assert result.n_images == 300 and not result.errors
    for p in result.points:
        assert abs((1 - p.macs_ratio) - p.budget) < 0.02 and p.images_per_s > 0
    assert "Top-k by CLS attention is left out by default" in " ".join(c.value for c in ran.caption)


def test_sweep_view(ran):
    result = ran.session_state["prune_result"]
    table = result.table()
    for prefix, column in (("Accuracy vs GMACs", "gmacs"), ("Accuracy vs measured images/s", "images_per_s")):
        spec = _chart(ran, prefix)
        names = [t["name"] for t in spec["data"]]
        assert names == ["Zero-TPrune", "ToMe", "EViT", "Random", "unpruned"]
        for trace in spec["data"][:4]:
            rows = table[table["name"] == trace["name"]].sort_values(column)
            assert np.allclose(_array(trace["x"]), rows[column]) and np.allclose(_array(trace["y"]), rows["accuracy"])
        star = spec["data"][4]
        assert np.allclose(_array(star["x"]), [table[column].iloc[0]]) and star["marker"]["symbol"] == "star"
    heat = _chart(ran, "Kept-patch overlap")["data"][0]
    z = _array(heat["z"]).astype(float).reshape(4, 4)
    assert np.allclose(np.diag(z), 1.0) and np.allclose(z, result.agreement(0.35).to_numpy())
    assert len(ran.dataframe[0].value) == 9  # the unpruned model and 8 configurations
    labels = [b.proto.label for b in ran.get("download_button")]
    assert "Download the sweep (CSV)" in labels and "Download retention (CSV)" in labels


def test_per_image_view_overlays_the_tokens_each_block_keeps(ran):
    result = ran.session_state["prune_result"]
    data = workflow.images_of(Resolver(), result.request)
    kept = {_title(s): s for s in _charts(ran) if s["data"] and s["data"][0]["type"] == "image"}
    assert set(kept) == {f"{n} −35%" for n in ("Zero-TPrune", "ToMe", "EViT", "Random")}
    for p in (result.point("zero-tprune", 0.35), result.point("tome", 0.35)):
        spec = kept[p.label]
        assert len(spec["data"]) == 1 + len(p.layers)  # the input and one panel per pruning block
        last = _array(spec["data"][-1]["z"]).reshape(64, 64, 3)
        assert np.array_equal(last, vz.overlay_tokens(data.images[0], p.layers[-1].groups(0), result.info.grid))
    # ToMe merges and never drops: every patch is in some token, several share one
    tome = result.point("tome", 0.35).layers[-1].groups(0)
    assert (tome >= 0).all() and len(np.unique(tome)) == result.point("tome", 0.35).layers[-1].n_out
    # pick an image a pruned configuration gets wrong, and show the scores behind each decision
    ran.radio(key="prune_img_filter").set_value("wrong").run()
    assert not ran.exception
    wrong = int(ran.selectbox(key="prune_img_wrong").value)
    assert any(p.preds[wrong] != result.labels[wrong] for p in result.points if p.budget == 0.35)
    ran.toggle(key="prune_img_scores").set_value(True).run()
    assert not ran.exception
    maps = [s for s in _charts(ran) if s["data"] and s["data"][0]["type"] == "heatmap" and ": " in _title(s)
            and "Kept-patch" not in _title(s)]
    zero = result.point("zero-tprune", 0.35)
    spec = next(s for s in maps if _title(s).startswith("Zero-TPrune −35%"))
    assert len(spec["data"]) == len(zero.layers)
    raw = _array(spec["data"][0]["customdata"]).astype(float).ravel()
    assert np.allclose(raw, zero.layers[0].scores[wrong], equal_nan=True)
    ran.radio(key="prune_img_filter").set_value("all").run()
    ran.toggle(key="prune_img_scores").set_value(False).run()


def test_per_layer_view(ran):
    result = ran.session_state["prune_result"]
    zero = result.point("zero-tprune", 0.2)
    hist = _chart(ran, "Zero-TPrune −20%: token scores per block")
    assert [t["type"] for t in hist["data"]] == ["bar"] * len(zero.layers)
    stats = _chart(ran, "Concentration of the token scores")
    assert {t["name"] for t in stats["data"]} == {"Zero-TPrune −20%", "Zero-TPrune −35%", "EViT −20%", "EViT −35%"}
    ret = _chart(ran, "Share of the object's patches")
    solid = {t["name"]: _array(t["y"]).astype(float) for t in ret["data"] if t.get("line", {}).get("dash") != "dot"}
    rt = result.retention_table()
    obj = rt[(rt["label"] == "EViT −35%") & (rt["region"] == "object")]
    assert np.allclose(solid["EViT −35%"], obj["retention"])
    heads = _chart(ran, "Zero-TPrune −20%: variance of each head")
    assert len(_array(heads["data"][0]["x"])) == len(zero.layers) * result.info.num_heads
    text = " ".join(m.value for m in ran.markdown)
    # the Shapes ground truth: class-token attention keeps the object above random's share; random does not
    assert "EViT −35% keeps the object" in text
    assert "Random −35% keeps object, marker and background alike" in text
    ran.radio(key="prune_region").set_value("background").run()
    assert not ran.exception
    assert _chart(ran, "Share of the background's patches")
    ran.selectbox(key="prune_layer_point").set_value("ToMe −35%").run()
    assert not ran.exception
    assert any("are not amounts of importance" in c.value for c in ran.caption)


def test_keep_token_importances(ran):
    ran.selectbox(key="prune_layer_point").set_value("Zero-TPrune −35%").run()
    ran.button(key="prune_keep").click().run()
    assert not ran.exception
    kept = ran.session_state["importances"]
    names = [k for k in kept if k.startswith("Pruning · Zero-TPrune −35%")]
    assert len(names) == 3  # one distribution per pruning block
    imp = kept[names[0]]
    assert imp.unit == "token" and imp.scale == "mass" and imp.values.dtype == np.float32
    assert imp.provenance["analysis"] == "pruning" and imp.provenance["request"]["methods"] == {"zero-tprune": {}}


def test_cnn_workspace_gets_the_reason_and_a_switch():
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    data = {"kind": "builtin", "name": "shapes", "split": "test", "n": 100, "seed": 0, "shift": None}
    at.session_state["workspace"] = {"model": {"kind": "zoo", "name": "shapes-cnn"}, "data": data}
    at.run()
    assert not at.exception
    warning = " ".join(w.value for w in at.warning)
    assert "'shapes-cnn' is a CNN, not a Vision Transformer" in warning and pruning.SUPPORTED in warning
    radio = at.radio[0]
    assert radio.options == ["the shipped Shapes ViT (shapes-vit)", "a timm ViT by name"]
    assert radio.value == "shipped"  # the page still runs, on the shipped ViT
    at.button(key="prune_switch").click().run()
    assert not at.exception
    assert at.session_state["workspace"] == {"model": workflow.SHIPPED_VIT, "data": data}
    assert not at.warning
    assert at.radio[0].value == "workspace"


def test_unsupported_timm_model_names_what_is_supported():
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.run()
    at.radio[0].set_value("timm").run()
    at.text_input(key="prune_timm_name").set_value("resnet10t").run()
    assert not at.exception
    assert any("not a Vision Transformer" in e.value and pruning.SUPPORTED in e.value for e in at.error)
    assert not at.button  # nothing to run
    at.checkbox(key="prune_timm_pretrained").set_value(True).run()
    at.text_input(key="prune_timm_name").set_value("deit_tiny_patch16_224").run()
    assert not at.exception
    assert any("cannot be downloaded: this app runs offline" in e.value for e in at.error)


def test_impossible_budgets_are_bounded_or_refused_with_the_valid_range():
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.run()
    model = Resolver().load_model(workflow.SHIPPED_VIT, default_workspace()["data"])
    # MACs budgets: only those every chosen method reaches are offered, and the caption says how far they reach
    reach = min(workflow.budget_limits(model, {m: {} for m in workflow.DEFAULT_METHODS}).values())
    options = next(m for m in at.multiselect if m.label == "MACs reductions").options
    assert max(int(o.strip("−%")) for o in options) <= 100 * reach < max(int(o.strip("−%")) for o in options) + 5
    assert any(f"reach at most −{np.floor(100 * reach):.0f}% MACs" in c.value for c in at.caption)
    # pruning only at the last block reaches much less: fewer budgets are offered
    at.multiselect(key="prune_layers_6").set_value([5]).run()
    assert not at.exception
    assert len(next(m for m in at.multiselect if m.label == "MACs reductions").options) < len(options)
    # keep rate / r: the widgets carry the spec's range and ToMe's largest r on this model
    at.radio(key="prune_budget_mode").set_value("knob").run()
    keep = at.number_input(key="prune_keep_rate")
    assert (keep.min, keep.max) == (0.01, 1.0)
    assert at.number_input(key="prune_tome_r").max == pruning.param_bounds("tome", model)["r"] == 32
    # a decreasing schedule starts at 2r: r = 20 asks block 0 to merge 40 of 64 tokens; the core refuses it
    at.selectbox(key="prune_tome_schedule").set_value("decreasing").run()
    at.number_input(key="prune_tome_r").set_value(20).run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "This budget cannot be used" in errors and "must be in [0, 32]" in errors and "got 40" in errors
    assert at.button(key="prune_run").disabled


def test_per_block_schedule_editor_runs_each_method_with_its_own_knob():
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.run()
    at.multiselect(key="prune_methods_zero-tprune-tome-evit-topk-cls-random").set_value(["zero-tprune", "tome"]).run()
    at.radio(key="prune_budget_mode").set_value("knob").run()
    at.radio(key="prune_schedule").set_value("per-block").run()
    keep = [at.number_input(key=f"prune_sched_keep_6_{b}") for b in range(6)]
    assert [k.value for k in keep] == [1.0, 1.0, 0.7, 0.7, 1.0, 0.7]  # the default blocks 2, 3, 5
    assert all((k.min, k.max) == (0.01, 1.0) for k in keep)
    r = [at.number_input(key=f"prune_sched_r_6_{b}") for b in range(6)]
    assert all(v.max == 32 for v in r)
    for b, v in enumerate([1.0, 1.0, 0.5, 1.0, 1.0, 1.0]):
        at.number_input(key=f"prune_sched_keep_6_{b}").set_value(v)
    for b, v in enumerate([8, 8, 0, 0, 0, 0]):
        at.number_input(key=f"prune_sched_r_6_{b}").set_value(v)
    at.number_input(key="prune_n").set_value(40)
    at.run()
    assert any("MACs of these settings: Zero-TPrune −" in c.value for c in at.caption)
    at.button(key="prune_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    result = at.session_state["prune_result"]
    assert result.request.budgets is None and result.n_images == 40
    assert result.request.methods == {"zero-tprune": {"schedule": [1.0, 1.0, 0.5, 1.0, 1.0, 1.0]},
                                      "tome": {"r_schedule": "list", "r_list": [8, 8, 0, 0, 0, 0]}}
    zero, tome = result.point("zero-tprune"), result.point("tome")
    assert [lt.block for lt in zero.layers] == [2] and zero.layers[0].n_out == 32
    assert tome.mlp_tokens_per_block == (57, 49, 49, 49, 49, 49)
    code = " ".join(c.value for c in at.code)
    assert "PruningRequest(" in code and "'r_list': [8, 8, 0, 0, 0, 0]" in code and "budgets=None" in code
    # one configuration per method, so the views still draw (agreement of the two, per image, per layer)
    assert _chart(at, "Kept-patch overlap") and _chart(at, "Accuracy vs GMACs")
