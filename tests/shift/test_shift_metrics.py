"""Weighted metrics against scikit-learn, and the coalition kernels against plain NumPy."""
import numpy as np
import pytest
from sklearn import metrics as skm

from core.kernels.coalitions import auroc_coalitions, mask_products, subset_products, subset_products_numpy
from core.shift import ShiftError
from core.shift.metrics import check_probabilities, metric_value, per_sample_values, weighted_auroc


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n, c = 500, 3
    logits = rng.normal(size=(n, c)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, c, n)
    weights = rng.exponential(size=n)
    return probs, labels, weights


def test_mean_metrics_match_scikit_learn_with_and_without_weights(data):
    probs, labels, w = data
    for weights in (None, w):
        assert metric_value("accuracy", probs, labels, weights) == pytest.approx(
            skm.accuracy_score(labels, probs.argmax(1), sample_weight=weights))
        assert metric_value("log_loss", probs, labels, weights) == pytest.approx(
            skm.log_loss(labels, probs, sample_weight=weights, labels=[0, 1, 2]))
        assert metric_value("brier", probs, labels, weights) == pytest.approx(
            skm.brier_score_loss(labels, probs, sample_weight=weights, labels=[0, 1, 2]))


def test_binary_brier_and_auroc_match_scikit_learn(data):
    _, _, w = data
    rng = np.random.default_rng(1)
    p1 = np.round(rng.random(500), 2)  # rounding makes ties, which must share half the credit
    probs = np.c_[1 - p1, p1]
    y = (rng.random(500) < p1).astype(int)
    assert metric_value("brier", probs, y, w) == pytest.approx(skm.brier_score_loss(y, p1, sample_weight=w))
    assert metric_value("auroc", probs, y, w) == pytest.approx(skm.roc_auc_score(y, p1, sample_weight=w))
    assert weighted_auroc(p1, y) == pytest.approx(skm.roc_auc_score(y, p1))


def test_mse_and_plain_importance_sampling():
    rng = np.random.default_rng(2)
    pred, y, w = rng.normal(size=300), rng.normal(size=300), rng.exponential(size=300)
    assert metric_value("mse", pred, y, w) == pytest.approx(skm.mean_squared_error(y, pred, sample_weight=w))
    assert metric_value("mse", pred, y, w, self_normalise=False) == pytest.approx(np.sum(w * (pred - y) ** 2) / 300)
    np.testing.assert_allclose(per_sample_values("mse", pred, y), (pred - y) ** 2)


def test_probabilities_are_checked():
    with pytest.raises(ShiftError, match="summing to 1"):
        check_probabilities(np.ones((4, 3)), 4, "probs", "classification")
    with pytest.raises(ShiftError, match=r"shape \[N, C\]"):
        check_probabilities(np.ones(4), 4, "probs", "classification")
    with pytest.raises(ShiftError, match="NaN"):
        check_probabilities(np.array([[0.5, np.nan]]), 1, "probs", "classification")
    assert check_probabilities(np.ones((3, 1)), 3, "preds", "regression").shape == (3,)


@pytest.mark.parametrize("log_clip", [np.log(3.0), 50.0])
def test_subset_products_kernel_matches_numpy(log_clip):
    rng = np.random.default_rng(3)
    logw = rng.normal(0, 0.8, size=(257, 5))
    out = np.empty((257, 32))
    raw, clipped = np.zeros(32), np.zeros(32, np.int64)
    subset_products(logw, log_clip, out, raw, clipped)
    ref_w, ref_raw, ref_clipped = subset_products_numpy(logw, log_clip)
    np.testing.assert_allclose(out, ref_w, rtol=1e-12)
    np.testing.assert_allclose(raw, ref_raw, rtol=1e-12)
    np.testing.assert_array_equal(clipped, ref_clipped)
    masks = np.array([0, 5, 31, 16])
    w, r, c = mask_products(logw, masks, log_clip)
    np.testing.assert_allclose(w, ref_w[:, masks], rtol=1e-12)


def test_auroc_kernel_matches_scikit_learn_for_every_coalition_and_replicate():
    rng = np.random.default_rng(4)
    n, p = 400, 3
    scores = np.round(rng.random(n), 2)
    y = (rng.random(n) < scores).astype(int)
    logw = rng.normal(0, 0.5, size=(n, p))
    counts = np.vstack([np.ones(n), np.bincount(rng.integers(0, n, n), minlength=n)])
    masks = np.arange(1 << p)
    order = np.argsort(scores, kind="stable")
    out = np.empty((2, len(masks)))
    auroc_coalitions(scores[order], y[order] == 1, logw[order], masks, np.log(4.0), counts[:, order], out)
    for m in masks:
        w = np.minimum(np.exp(logw[:, [j for j in range(p) if (m >> j) & 1]].sum(1)), 4.0)
        for r in range(2):
            assert out[r, m] == pytest.approx(skm.roc_auc_score(y, scores, sample_weight=w * counts[r]))
