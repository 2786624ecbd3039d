"""AppTest of pages/9_Importance_distributions.py with two kept distributions."""
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from core.importance import Importance

ROOT = Path(__file__).resolve().parents[2]


def test_empty_page_explains_what_to_do():
    at = AppTest.from_file(str(ROOT / "pages/9_Importance_distributions.py"), default_timeout=60).run()
    assert not at.exception
    assert any("No distributions kept yet" in i.value for i in at.info)


def test_compares_kept_distributions():
    at = AppTest.from_file(str(ROOT / "pages/9_Importance_distributions.py"), default_timeout=60)
    rng = np.random.default_rng(0)
    at.session_state["importances"] = OrderedDict(
        a=Importance(rng.normal(0, 1, 300), "sample", provenance={"analysis": "ood", "method": "energy"}),
        b=Importance(rng.normal(2, 1, 300), "sample", provenance={"analysis": "ood", "method": "msp"}),
    )
    at.run()
    assert not at.exception
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert len(spec["data"]) == 2
    summary = at.dataframe[0].value
    assert list(summary["distribution"]) == ["a", "b"]
    assert abs(summary["mean"][1] - 2) < 0.3
    pairwise = at.dataframe[1].value
    assert pairwise["wasserstein"][0] > 1.5
    at.radio(key="imp_scale").set_value("rank percentile").run()
    assert not at.exception


def _hub():
    return AppTest.from_file(str(ROOT / "pages/9_Importance_distributions.py"), default_timeout=60)


def _two_analyses():
    rng = np.random.default_rng(1)
    data = {"kind": "builtin", "name": "shapes"}
    return OrderedDict({
        "OOD · Energy · ID": Importance(rng.normal(0, 1, 300), "sample", scale="score",
                                        provenance={"analysis": "ood", "method": "energy", "data": data}),
        "OOD · MSP · ID": Importance(rng.normal(0, 1, 300), "sample", scale="score",
                                     provenance={"analysis": "ood", "method": "msp", "data": data}),
        "Pruning · tokens": Importance(rng.exponential(size=(6, 65)).astype(np.float32), "token",
                                       provenance={"analysis": "pruning", "method": "zero-tprune", "data": data}),
    })


def test_results_of_two_analyses_compare_and_the_units_are_explained():
    at = _hub()
    at.session_state["importances"] = _two_analyses()
    at.run()
    assert not at.exception, at.exception
    assert any("different kinds of units" in i.value for i in at.info)
    pairs = at.dataframe[1].value
    tok = pairs[(pairs["a"] == "OOD · Energy · ID") & (pairs["b"] == "Pruning · tokens")].iloc[0]
    assert "different units" in tok["rank_note"] and np.isfinite(tok["js_divergence"])
    same = pairs[(pairs["a"] == "OOD · Energy · ID") & (pairs["b"] == "OOD · MSP · ID")].iloc[0]
    assert np.isfinite(same["spearman"])
    kinds = [t["type"] for c in at.get("plotly_chart") for t in json.loads(c.proto.spec)["data"]]
    assert "heatmap" in kinds and "scattergl" in kinds  # the comparison matrix and the same-units scatter
    at.radio(key="imp_kind").set_value("lorenz").run()
    assert not at.exception
    lorenz = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [t["name"] for t in lorenz["data"]] == ["equality", "Pruning · tokens"]  # scores have no Lorenz curve
    summary = at.dataframe[0].value
    assert np.isnan(summary.loc[0, "gini"]) and np.isfinite(summary.loc[2, "gini"])


def test_rename_remove_and_the_shelf_survives_a_reload():
    at = _hub()
    at.session_state["importances"] = _two_analyses()
    at.run()
    at.selectbox(key="imp_rename_which").set_value("OOD · MSP · ID")
    at.text_input(key="imp_rename_to").set_value("baseline").run()  # typing reruns the page, which enables Rename
    at.button(key="imp_rename").click().run()
    assert not at.exception
    assert list(at.session_state["importances"]) == ["OOD · Energy · ID", "baseline", "Pruning · tokens"]
    at.multiselect(key="imp_remove_which").set_value(["Pruning · tokens"]).run()
    at.button(key="imp_remove").click().run()
    assert list(at.session_state["importances"]) == ["OOD · Energy · ID", "baseline"]
    shelf = at.session_state["_shelf_id"]
    again = _hub()
    again.query_params["shelf"] = shelf  # a browser reload: a new session with the same link
    again.run()
    assert not again.exception
    assert list(again.session_state["importances"]) == ["OOD · Energy · ID", "baseline"]


def test_save_and_load_through_the_page_and_a_bad_file_changes_nothing():
    from core.importance import save

    at = _hub()
    at.run()
    at.file_uploader(key="imp_load").set_value(("broken.npz", b"PK\x03\x04 not really", "application/octet-stream"))
    at.run()
    assert not at.exception
    assert any("could not be loaded" in e.value and "unchanged" in e.value for e in at.error)
    assert not at.session_state["importances"]
    at.file_uploader(key="imp_load").set_value(("mine.npz", save(_two_analyses()), "application/octet-stream"))
    at.run()
    assert not at.exception
    assert list(at.session_state["importances"]) == list(_two_analyses())
    assert any("Loaded 3 distributions" in s.value for s in at.success)
