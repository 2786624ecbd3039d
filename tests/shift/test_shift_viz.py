"""Figures of core.viz.shift: the waterfall adds up, the histogram counts every row."""
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from core import shift
from core.viz import shift as vs


def test_waterfall_steps_add_up_to_the_target_performance():
    fig = vs.attribution_waterfall(["P(a)", "P(b | a)"], [0.1, -0.3], start=0.9, total=-0.2, ci_low=[0.05, -0.4],
                                   ci_high=[0.2, -0.25], total_ci=(-0.3, -0.1), metric="accuracy")
    wf = fig.data[0]
    assert isinstance(wf, go.Waterfall) and list(wf.measure) == ["absolute", "relative", "relative", "total"]
    assert wf.y[0] + sum(wf.y[1:3]) == pytest.approx(wf.y[3]) and wf.y[3] == pytest.approx(0.7)
    bars = fig.data[1]
    np.testing.assert_allclose(bars.y, [1.0, 0.7])  # the end of each step
    np.testing.assert_allclose(bars.error_y.array, [0.1, 0.05])
    np.testing.assert_allclose(bars.error_y.arrayminus, [0.05, 0.1])
    assert fig.data[2].error_y.array[0] == pytest.approx(0.1)  # total interval: (-0.1) - (-0.2)


def test_waterfall_of_an_explanation(explain):
    res = explain("y", n_boot=20)
    fig = vs.explanation_waterfall(res)
    assert list(fig.data[0].x) == ["source", "P(z)", "P(y)", "P(x | y, z)", "target"]
    assert fig.data[0].y[-1] == res.target_performance
    assert "lower is better" in fig.layout.yaxis.title.text


def test_weight_histogram_counts_every_positive_row_and_reports_the_ess():
    w = np.exp(np.random.default_rng(0).normal(0, 1, 1000)).astype(np.float32)
    w[:3] = 0
    fig = vs.weight_histogram(w, clip=20.0)
    assert int(np.sum(fig.data[0].y)) == 997
    ess = w.astype(float).sum() ** 2 / (w.astype(float) ** 2).sum()
    assert f"ESS {ess:,.0f} of 1,000" in fig.layout.title.text and "3 rows of weight 0" in fig.layout.title.text


def test_drift_figures():
    rng = np.random.default_rng(1)
    a = pd.DataFrame({"u": rng.normal(size=300), "c": rng.choice(list("ab"), 300)})
    b = pd.DataFrame({"u": rng.normal(1, 1, 300), "c": rng.choice(list("ab"), 300)})
    table = shift.drift_table(a, b)
    fig = vs.drift_effects(table)
    assert list(fig.data[0].y)[-1] == "u"  # largest effect on top
    view = vs.drift_table_view(table)
    assert list(view.columns) == list(vs.DRIFT_VIEW.values())
    curves = vs.reliability_curves({"a": np.array([[0.2, 0.25, 10], [0.7, 0.6, 10]])})
    assert len(curves.data) == 2
