"""The suite workflow: typed results, metrics and ranking, random baselines, NaN reporting, cache, tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from core import attribution as A
from core import data, models
from core.attribution.suite import RANDOM_MAP, MetricSettings
from core.importance import Importance


class CountingCache:
    def __init__(self):
        self.items, self.computed = {}, []

    def get_or_compute(self, key, compute):
        if key not in self.items:
            self.computed.append(key)
            self.items[key] = compute()
        return self.items[key]


@pytest.fixture(scope="module")
def shapes():
    return data.load("shapes", n=6, seed=4, split="test")


@pytest.fixture(scope="module")
def cnn():
    return models.load("shapes-cnn")


def test_image_suite_result(shapes, cnn):
    progress = []
    cache = CountingCache()
    methods = {"saliency": {}, "gradcam": {}, "integrated-gradients": {"steps": 8}, "attention-rollout": {}, "lime": {}}
    fast = MetricSettings(step=512)  # 8 deletion/insertion steps keep the test quick
    res = A.run_attribution(cnn, shapes, [0, 2, 5], methods, settings=fast, progress=lambda f, m: progress.append(f),
                            cache=cache)
    assert res.kind == "image" and res.unit == "pixel" and res.methods == ["saliency", "gradcam", "integrated-gradients"]
    assert "without attention" in res.errors["attention-rollout"] and "unknown" in res.errors["lime"]
    for m, v in res.maps.items():
        assert v.shape == (3, 3, 64, 64) and v.dtype == np.float32
        assert not res.nan_samples[m].any()
    np.testing.assert_array_equal(res.indices, [0, 2, 5])
    np.testing.assert_array_equal(res.targets, res.preds)
    assert res.images.shape == (3, 64, 64, 3) and res.masks.shape == (3, 64, 64)
    # metrics: one row per (method, sample), and the random map's localisation is the object's area share
    assert len(res.metrics) == 9 and set(res.metric_columns) == {"deletion_auc", "insertion_auc", "sparseness", "complexity",
                                                                  "relevance_mass", "relevance_rank"}
    np.testing.assert_allclose(res.baseline["relevance_mass"], shapes.masks["object"][[0, 2, 5]].mean((1, 2)))
    # the curves behind the AUCs are kept for the figure: 4096 pixels in steps of 512, plus the start
    curve = res.curves["gradcam"]["deletion"]
    assert curve.scores.shape == (3, 9) and set(res.curves[RANDOM_MAP]) == {"deletion", "insertion"}
    np.testing.assert_allclose(res.metrics.loc[res.metrics["method"] == "gradcam", "deletion_auc"], curve.auc())
    table = res.summary()
    assert list(table["method"])[-1] == RANDOM_MAP and set(table["method"][:3]) == set(res.methods)
    assert table["mean_rank"].iloc[:3].is_monotonic_increasing
    assert res.ranking() == list(table["method"][:3])
    ranked = table[table["method"] != "random map"]
    best = ranked["mean_rank"].min()
    assert res.best_methods() == [m for m, r in zip(ranked["method"], ranked["mean_rank"]) if r == best]
    assert res.best_methods()[0] == res.ranking()[0]
    # progress runs forward to the end
    assert progress[-1] == 1.0 and all(b >= a - 1e-9 for a, b in zip(progress, progress[1:]))
    # importances: float32, channel-summed, no copy on a second call
    imps = res.to_importances()
    assert isinstance(imps["gradcam"], Importance) and imps["gradcam"].unit == "pixel"
    assert imps["gradcam"].values.shape == (3, 64, 64) and imps["gradcam"].values.dtype == np.float32
    assert imps["gradcam"].values is res.to_importances()["gradcam"].values
    assert imps["saliency"].provenance["samples"] == [0, 2, 5]
    assert res.nbytes >= sum(v.nbytes for v in res.maps.values()) + res.images.nbytes
    # cached: a rerun with one more method computes only that one
    n_before = len(cache.computed)
    res2 = A.run_attribution(cnn, shapes, [0, 2, 5], {**methods, "smoothgrad": {"samples": 4}}, settings=fast, cache=cache)
    assert len(cache.computed) == n_before + 1 and "smoothgrad" in cache.computed[-1]
    np.testing.assert_array_equal(res2.maps["gradcam"], res.maps["gradcam"])


def test_estimate_run_adds_the_metrics_costs(shapes, cnn):
    methods = {"integrated-gradients": {"steps": 10}, "rise": {"masks": 100}, "attention-rollout": {}}
    est = A.estimate_run(cnn, shapes, [0, 1], methods, metrics=("deletion", "insertion", "sensitivity"),
                         settings=MetricSettings(sensitivity_samples=3))
    ig = A.estimate_passes(cnn, torch.zeros(2, 3, 64, 64), "integrated-gradients", steps=10)
    curve = 2 * (64 + 1)  # one row of 64 pixels per step on 2 images
    assert est["integrated-gradients"] == ig.scaled(4) + A.PassEstimate(2 * curve)
    assert est["rise"].forward == 4 * 200 + 2 * curve
    assert est[RANDOM_MAP].forward == 2 * curve
    assert est["attention-rollout"].equivalent == 0  # a CNN: the method cannot run


def test_nan_maps_are_reported_not_scored():
    class SqrtNet(nn.Module):  # the gradient of sqrt at 0 is inf, so the second image's map is not finite
        card = {"mean": [0.5] * 3, "std": [0.25] * 3}

        def forward(self, x):
            s = torch.sqrt(x[:, 0, 0, 0])
            return torch.stack([s, -s], 1)

    x = torch.ones(3, 3, 8, 8)
    x[1, 0, 0, 0] = 0.0
    masks = np.zeros((3, 8, 8), bool)
    masks[:, :4, :4] = True
    res = A.run_attribution(SqrtNet(), x, None, {"saliency": {}}, target=0, masks=masks,
                            metrics=("sparseness", "localisation", "deletion"))
    np.testing.assert_array_equal(res.nan_samples["saliency"], [False, True, False])
    rows = res.metrics.set_index("sample")
    assert rows.loc[1].drop("method").isna().all() and rows.loc[0, ["sparseness", "relevance_mass"]].notna().all()
    assert res.summary().loc[0, "nan_samples"] == 1


def test_table_suite_with_a_tabular_model():
    from core.models.tabular import train_tabular

    wine = data.load("wine")
    model = train_tabular("logistic-regression", wine, seed=0)
    res = A.run_attribution(model, wine, model.test_index[:4],
                            {"feature-ablation": {}, "kernelshap": {"samples": 64, "background_size": 8},
                             "permutation": {"repeats": 2}, "saliency": {}},
                            target="label", metrics=("deletion", "sparseness", "localisation"))
    assert res.kind == "table" and res.unit == "feature" and "differentiable" in res.errors["saliency"]
    assert res.maps["kernelshap"].shape == (4, len(model.feature_names)) and res.maps["kernelshap"].dtype == np.float32
    np.testing.assert_array_equal(res.targets, wine.labels[model.test_index[:4]])
    assert "relevance_mass" not in res.metrics  # no ground truth for a table
    imp = res.to_importances()["feature-ablation"]
    assert imp.unit == "feature" and imp.names == model.feature_names and imp.values is res.maps["feature-ablation"]
    assert isinstance(res.summary(), pd.DataFrame) and res.rows.shape == (4, len(model.feature_names))
    # the background is the model's training rows, since it was trained on this table
    kernel = A.attribute(model, wine.frame[model.feature_names].iloc[model.test_index[:4]], res.targets, "kernelshap",
                         samples=64, background_size=8, background=wine.frame[model.feature_names].iloc[model.train_index])
    np.testing.assert_allclose(res.maps["kernelshap"], kernel, rtol=1e-5, atol=1e-7)


def test_bad_suite_input():
    model = models.load("shapes-cnn")
    ds = data.load("shapes", n=3)
    with pytest.raises(A.AttributionError, match="0..2"):
        A.run_attribution(model, ds, [5], {"saliency": {}})
    with pytest.raises(A.AttributionError, match="Unknown metric"):
        A.run_attribution(model, ds, [0], {"saliency": {}}, metrics=("speed",))
    with pytest.raises(A.AttributionError, match="no class"):
        A.run_attribution(model, data.load("noise", n=2), [0], {"saliency": {}}, target="label")
