"""Figure builders for attribution: the right numbers, shared colour scales, NaN maps not drawn."""
from __future__ import annotations

import numpy as np
import pytest

from core.viz import attribution as V


def _maps():
    rng = np.random.default_rng(0)
    return {"a": rng.normal(size=(2, 8, 8)), "b": 10 * rng.random((2, 8, 8))}


def test_reduce_channels():
    a = np.arange(2 * 3 * 2 * 2, dtype=float).reshape(2, 3, 2, 2) - 10
    np.testing.assert_allclose(V.reduce_channels(a), a.sum(1))
    np.testing.assert_allclose(V.reduce_channels(a, "abs-sum"), np.abs(a).sum(1))
    np.testing.assert_allclose(V.reduce_channels(a[0], "max-abs"), np.abs(a[0]).max(0))
    with pytest.raises(ValueError):
        V.reduce_channels(a, "mean")


def test_heatmap_grid_shares_one_colour_scale():
    maps = _maps()
    images = np.zeros((2, 8, 8, 3), np.uint8)
    fig = V.heatmap_grid(maps, images)
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(heat) == 4 and all(t.coloraxis == "coloraxis" for t in heat)
    vmax = max(np.abs(m).max() for m in maps.values())
    assert fig.layout.coloraxis.cmax == pytest.approx(vmax) and fig.layout.coloraxis.cmin == pytest.approx(-vmax)
    assert len([t for t in fig.data if t.type == "image"]) == 2 + 4  # the image column and one under each overlay
    # per-method: each method's largest |value| becomes 1
    fig = V.heatmap_grid(maps, images, normalise="per-method")
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert max(np.abs(np.asarray(heat[1].z)).max(), np.abs(np.asarray(heat[3].z)).max()) == pytest.approx(1.0, rel=1e-6)
    fig = V.heatmap_grid(maps, None, normalise="per-map")
    assert all(np.abs(np.asarray(t.z)).max() == pytest.approx(1.0, rel=1e-6) for t in fig.data if t.type == "heatmap")


def test_heatmap_grid_leaves_nan_maps_undrawn_and_bins_large_maps():
    maps = _maps()
    maps["a"][1, 0, 0] = np.nan
    fig = V.heatmap_grid(maps, nan_samples={"b": np.array([True, False])})
    assert len([t for t in fig.data if t.type == "heatmap"]) == 2
    assert sum("NaN" in (a.text or "") for a in fig.layout.annotations) == 2
    big = {"m": np.ones((1, 256, 256))}
    fig = V.heatmap_grid(big, np.zeros((1, 256, 256, 3), np.uint8), max_side=64)
    assert np.asarray(fig.data[-1].z).shape == (64, 64)


def test_histograms_bars_and_curves():
    maps = _maps()
    fig = V.value_histograms(maps, bins=20)
    assert len(fig.data) == 2 and all(abs(np.sum(t.y) - 1) < 1e-9 for t in fig.data)
    fig = V.value_histograms(maps, bins=20, normalise=True)
    assert all(min(t.x) > -1 and max(t.x) < 1 for t in fig.data)
    names = ["f0", "f1", "f2"]
    fig = V.sample_bars({"x": np.array([0.1, -3.0, 1.0]), "y": np.array([0.0, 1.0, 2.0])}, names, top_k=2)
    assert list(fig.data[0].y) == ["f2", "f1"]  # strongest on top: f1 (3.0) then f2 (2.0)
    fig = V.global_importance({"x": np.array([[1.0, -1.0, 2.0], [1.0, 1.0, 2.0]])}, names)
    np.testing.assert_allclose(sorted(fig.data[0].x), [0.25, 0.25, 0.5])
    frac = np.linspace(0, 1, 5)
    fig = V.perturbation_curves({"m": (frac, np.tile(1 - frac, (3, 1)))})
    assert "AUC 0.500" in fig.data[1].name
    from core.attribution.metrics import Curve

    fig = V.perturbation_curves({"m": Curve("deletion", frac, np.tile(frac, (2, 1)))})
    assert "AUC 0.500" in fig.data[1].name
