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
