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
