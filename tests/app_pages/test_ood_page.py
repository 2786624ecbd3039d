"""AppTest of pages/1_OOD_detection.py: the default analysis runs every detector without an exception."""
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import core.ood as ood

ROOT = Path(__file__).resolve().parents[2]

TIMEOUT = 600


@pytest.fixture(scope="module")
def ran():
    at = AppTest.from_file(str(ROOT / "pages/1_OOD_detection.py"), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
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


def _npz(n, d, classes=3, ood=False, seed=0, nan=False) -> bytes:
    """Class clusters (ID) or unclustered low-norm features (OOD) with a linear head."""
    import io

    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres = np.random.default_rng(0).normal(0, 4, (classes, d))
    feats = rng.normal(0, 1, (n, d)) + (0 if ood else centres[y])
    w = centres / 4
    b = np.zeros(classes)
    logits = feats @ w.T + b
    if nan:
        logits[0, 0] = np.nan
    buf = io.BytesIO()
    np.savez(buf, logits=logits, features=feats, labels=y, head_weight=w, head_bias=b)
    return buf.getvalue()


def test_npz_workspace_runs_array_detectors_and_explains_the_rest():
    from collections import OrderedDict

    at = AppTest.from_file(str(ROOT / "pages/1_OOD_detection.py"), default_timeout=TIMEOUT)
    at.session_state["_uploads"] = OrderedDict(abc=("id.npz", _npz(400, 16)))
    at.session_state["workspace"] = {"model": {"kind": "none"},
                                     "data": {"kind": "upload", "filename": "id.npz", "digest": "abc", "options": {}}}
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
    at.session_state["_uploads"] = OrderedDict(abc=("id.npz", _npz(400, 16)))
    at.session_state["workspace"] = {"model": {"kind": "none"},
                                     "data": {"kind": "upload", "filename": "id.npz", "digest": "abc", "options": {}}}
    at.run()
    # features of another dimension: feature detectors refuse that set, logit detectors still score it
    at.file_uploader(key="ood_upload").set_value(("other.npz", _npz(300, 8, seed=2), "application/octet-stream"))
    at.run()
    at.button(key="ood_run").click().run()
    assert not at.exception
    warnings = " ".join(w.value for w in at.warning)
    assert "feature dimension" in warnings
    result = at.session_state["ood_result"]
    assert "energy" in set(result.table["detector"])
    # NaN logits: a clear message, earlier results kept
    at.file_uploader(key="ood_upload").set_value(("nan.npz", _npz(300, 16, nan=True), "application/octet-stream"))
    at.run()
    at.button(key="ood_run").click().run()
    assert not at.exception
    text = " ".join(e.value for e in at.error) + " ".join(w.value for w in at.warning)
    assert "NaN" in text
    assert at.session_state["ood_result"] is not None
