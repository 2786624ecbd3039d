"""The registry, the public API's contract (shapes, dtypes, errors) and the pass estimates."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from attribution_models import LinearTable, TinyCNN, tiny_vit

from core import attribution as A
from core.attribution import PassEstimate

IMAGE_IDS = {"saliency", "grad-x-input", "integrated-gradients", "smoothgrad", "vargrad", "occlusion", "rise", "gradcam",
             "attention-rollout", "reagent", "kernelshap"}
TABLE_IDS = {"permutation", "feature-ablation", "kernelshap", "exact-shapley", "reagent"}
GRADIENT_IDS = {"saliency", "grad-x-input", "integrated-gradients", "smoothgrad", "vargrad"}


def test_registry_holds_the_issue_methods():
    assert set(A.available("image")) == IMAGE_IDS
    assert set(A.available("table")) == TABLE_IDS | GRADIENT_IDS  # torch table models get the gradient family
    assert A.available()[:3] == ["saliency", "grad-x-input", "integrated-gradients"]
    for s in A.specs():
        assert s.description and s.reference and s.cost is not None
        assert s.validate_params({}, A.AttributionError) == s.defaults
        if s.slow:
            assert len(s.slow) > 10
    assert {s.id for s in A.specs() if s.slow} >= {"rise", "kernelshap", "exact-shapley", "reagent"}
    assert A.spec("integrated-gradients").param("steps").default == 50


def test_reasons_for_methods_that_do_not_apply():
    from sklearn.linear_model import LogisticRegression

    rows = np.random.default_rng(0).normal(size=(20, 13))
    clf = LogisticRegression().fit(rows, (rows[:, 0] > 0).astype(int))
    reasons = A.usable(clf, rows)
    assert "differentiable torch model" in reasons["integrated-gradients"]
    assert "image" in reasons["gradcam"]
    assert "12" in reasons["exact-shapley"]  # 13 features: too many coalitions
    assert reasons["kernelshap"] is None and reasons["permutation"] is None
    cnn = TinyCNN()
    x = torch.zeros(1, 3, 8, 8)
    assert "CNN without attention" in A.unavailable_reason("attention-rollout", cnn, x)
    assert "table" in A.unavailable_reason("feature-ablation", cnn, x)
    assert A.unavailable_reason("attention-rollout", tiny_vit(), torch.zeros(1, 3, 32, 32)) is None
    with pytest.raises(A.AttributionError, match="differentiable"):
        A.attribute(clf, rows, 1, "saliency")


def test_bad_input_gets_a_clear_error():
    model = TinyCNN()
    with pytest.raises(A.AttributionError, match="uint8"):
        A.attribute(model, np.zeros((1, 8, 8, 3), np.uint8), 0, "saliency")
    with pytest.raises(A.AttributionError, match="0..3"):
        A.attribute(model, torch.zeros(2, 3, 8, 8), [0, 7], "saliency")
    with pytest.raises(A.AttributionError, match="one per sample"):
        A.attribute(model, torch.zeros(2, 3, 8, 8), [0, 1, 2], "saliency")
    with pytest.raises(A.AttributionError, match="Unknown attribution method"):
        A.attribute(model, torch.zeros(1, 3, 8, 8), 0, "lime")
    with pytest.raises(A.AttributionError, match="no parameter"):
        A.attribute(model, torch.zeros(1, 3, 8, 8), 0, "saliency", steps=3)
    with pytest.raises(A.AttributionError, match="at most 8"):
        A.attribute(model, torch.zeros(1, 3, 8, 8), 0, "occlusion", patch=9)
    with pytest.raises(A.AttributionError, match="NaN"):
        A.attribute(model, torch.full((1, 3, 8, 8), float("nan")), 0, "saliency")


def test_every_method_returns_the_input_shape_and_restores_the_model():
    model = TinyCNN()
    model.train()
    model.conv1.eval()  # a mixed state must come back exactly
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    state = copy.deepcopy(model.state_dict())
    fast = {"rise": {"masks": 32, "grid": 3}, "kernelshap": {"samples": 20, "grid": 2}, "occlusion": {"patch": 4, "stride": 4},
            "reagent": {"max_steps": 3, "min_steps": 0, "grid": 2}, "integrated-gradients": {"steps": 4},
            "smoothgrad": {"samples": 3}, "vargrad": {"samples": 3}}
    for m in A.available("image"):
        if A.unavailable_reason(m, model, x):
            continue
        a = A.attribute(model, x, 1, m, **fast.get(m, {}))
        assert a.shape == x.shape and a.dtype == np.float32, m
    assert model.training and not model.conv1.training and model.conv2.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_table_methods_accept_dataframes_in_the_model_feature_order():
    from core.data import load
    from core.models.tabular import train_tabular

    wine = load("wine")
    model = train_tabular("logistic-regression", wine, seed=0)
    frame = wine.frame[model.feature_names].iloc[:3]
    shuffled = frame[frame.columns[::-1]]
    a = A.attribute(model, frame, None, "feature-ablation")
    b = A.attribute(model, shuffled, None, "feature-ablation")
    assert a.shape == frame.shape and a.dtype == np.float64
    np.testing.assert_allclose(a, b)  # columns matched by name
    e = A.explain(LinearTable(np.eye(3)), pd.DataFrame(np.eye(3), columns=list("abc")), None, "grad-x-input")
    assert e.values.shape == (3, 3)


def test_pass_estimates():
    model = TinyCNN()
    x = torch.zeros(4, 3, 16, 16)
    assert A.estimate_passes(model, x, "integrated-gradients", steps=50) == PassEstimate(4 * 52, 4 * 50)
    assert A.estimate_passes(model, (4, 3, 16, 16), "rise", masks=300).forward == 1200
    # occlusion: ⌊(16 − 8)/4⌋ + 1 = 3 positions per axis, plus the unoccluded pass
    assert A.estimate_passes(model, x, "occlusion", patch=8, stride=4).forward == 4 * 10
    assert A.estimate_passes(model, x, "occlusion").equivalent == A.estimate_passes(model, x, "occlusion").forward
    rows = np.zeros((5, 6))
    assert A.estimate_passes(LinearTable(np.ones((2, 6))), rows, "exact-shapley", background_size=10).forward == 5 * 64 * 10
    e = A.explain(model, x, 0, "occlusion", patch=8, stride=4)
    assert e.passes == A.estimate_passes(model, x, "occlusion", patch=8, stride=4)
    assert e.info["windows"] == 9
