"""Figure builders of core.viz.pruning, fed the tables and arrays a sweep returns."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from core.pruning import run_sweep
from core.viz import pruning as vz


@pytest.fixture(scope="module")
def result(shapes_vit):
    from core.data import load

    data = load("shapes", split="test", n=6, seed=2)
    return run_sweep(shapes_vit, data, {"zero-tprune": {}, "tome": {}, "evit": {}}, budgets=(0.2, 0.35), batch_size=6,
                     throughput_batch=2, throughput_rounds=1), data


def test_accuracy_vs_cost(result):
    res, _ = result
    for x in ("gmacs", "images_per_s", "macs_ratio"):
        fig = vz.accuracy_vs_cost(res.table(), x=x)
        names = [t.name for t in fig.data]
        assert names == ["Zero-TPrune", "ToMe", "EViT", "unpruned"]
        assert all(len(t.x) == 2 for t in fig.data[:3]) and len(fig.data[3].x) == 1
        assert list(fig.data[0].x) == sorted(fig.data[0].x)
    with pytest.raises(ValueError, match="x must be"):
        vz.accuracy_vs_cost(res.table(), x="seconds")


def test_overlay_darkens_dropped_and_tints_merged_patches():
    image = np.full((4, 4, 3), 200, np.uint8)
    origin = np.array([1, -1, 2, 2])  # 2×2 grid: kept alone, dropped, two patches merged into token 2
    out = vz.overlay_tokens(image, origin, (2, 2))
    assert (out[:2, :2] == 200).all()  # kept alone: untouched
    assert (out[:2, 2:] < 100).all()  # dropped: darkened
    assert (out[2:, :2] == out[2:, 2:]).all() and not (out[2:] == 200).all()  # one tint for the whole group


def test_kept_tokens_panels(result):
    res, data = result
    point = res.point("tome", 0.35)
    fig = vz.kept_tokens(data.images[0], [lt.origin[0] for lt in point.layers], res.info.grid,
                         titles=[f"after block {lt.block}" for lt in point.layers])
    assert isinstance(fig, go.Figure) and len(fig.data) == 1 + len(point.layers) == 7
    assert all(isinstance(t, go.Image) for t in fig.data)


def test_layer_figures(result):
    res, _ = result
    point = res.point("zero-tprune", 0.35)
    fig = vz.importance_by_layer({f"block {lt.block}": lt.scores for lt in point.layers}, score_name=point.score_name)
    assert len(fig.data) == 3
    stats = res.layer_statistics()
    fig = vz.layer_statistics(stats[stats["method"] == "zero-tprune"])
    assert len(fig.data) == 4  # two budgets × (entropy, Gini)
    fig = vz.retention_by_layer(res.retention_table(), region="object")
    assert len(fig.data) == 2 * len(res.points)
    fig = vz.head_variance({lt.block: lt.head_variance for lt in point.layers},
                           {lt.block: lt.head_kept for lt in point.layers}, v_min=point.params["v_min"],
                           v_max=point.params["v_max"])
    assert len(fig.data[0].x) == 3 * 3  # three pruning blocks × three heads
    assert 0 <= min(fig.data[0].marker.color) and max(fig.data[0].marker.color) <= 1
    fig = vz.agreement(res.agreement(0.35))
    assert fig.data[0].z.shape == (3, 3)


def test_head_filter_bounds_are_labelled_where_they_are_drawn(result):
    """On a log axis an annotation's y is log10 of the value: the labels sit on their dashed lines."""
    res, _ = result
    point = res.point("zero-tprune", 0.35)
    fig = vz.head_variance({lt.block: lt.head_variance for lt in point.layers}, v_min=0.01, v_max=10.0)
    lines = sorted(s.y0 for s in fig.layout.shapes)
    labels = {a.text: a.y for a in fig.layout.annotations}
    assert lines == [0.01, 10.0] and labels == {"v_min": -2.0, "v_max": 1.0}


def test_token_score_maps_rank_each_block_and_leave_gone_patches_blank(result):
    res, _ = result
    point = res.point("zero-tprune", 0.35)
    scores = [lt.scores[0] for lt in point.layers]
    fig = vz.token_score_maps(scores, res.info.grid, titles=[f"block {lt.block}" for lt in point.layers])
    assert len(fig.data) == len(point.layers) and all(isinstance(t, go.Heatmap) for t in fig.data)
    for trace, s in zip(fig.data, scores):
        z = np.asarray(trace.z, float).ravel()
        ok = np.isfinite(s)
        assert np.array_equal(np.isfinite(z), ok)  # a patch already gone (or dropped as similar) is blank
        # the colour is the score's rank among the block's patches: the top-scored patch is 1, the lowest 0
        assert z[ok][np.argmax(s[ok])] == 1.0 and z[ok][np.argmin(s[ok])] == 0.0
        assert np.array_equal(np.argsort(z[ok], kind="stable"), np.argsort(s[ok], kind="stable"))
        assert np.allclose(np.asarray(trace.customdata, float).ravel(), s, equal_nan=True)
