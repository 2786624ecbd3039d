"""KernelSHAP against exact Shapley values, and exact Shapley values against closed forms."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from attribution_models import LinearImage, LinearTable

from core import attribution as A
from core.attribution._image import grid_segments, superpixels
from core.attribution.shapley import exact_shapley_from_values, kernel_coalitions, shapley_kernel_mass


@pytest.fixture(scope="module")
def six_feature_model():
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    y = ((x[:, 0] * x[:, 1] + x[:, 2] - 0.5 * x[:, 3] ** 2) > 0).astype(int)
    model = MLPClassifier((16,), max_iter=2000, random_state=0).fit(x, y)
    return model, x


def test_kernelshap_converges_to_exact_shapley_on_six_features(six_feature_model):
    model, x = six_feature_model
    rows, bg = x[:5], x[100:130]
    exact = A.attribute(model, rows, 1, "exact-shapley", background=bg, background_size=30)
    errors = [np.abs(A.attribute(model, rows, 1, "kernelshap", background=bg, background_size=30, samples=s, seed=1)
                     - exact).max() for s in (16, 32, 48)]
    assert errors[0] > errors[2]
    assert errors[2] < 0.2 * np.abs(exact).max()
    # a budget of 2^6 − 2 enumerates every coalition: the regression gives the Shapley values exactly
    full = A.attribute(model, rows, 1, "kernelshap", background=bg, background_size=30, samples=62)
    np.testing.assert_allclose(full, exact, atol=1e-10)


def test_kernelshap_sampling_converges_on_twelve_features():
    w = np.random.default_rng(1).normal(size=(2, 12))
    model = _Interacting(w)
    rng = np.random.default_rng(2)
    rows, bg = rng.normal(size=(3, 12)), rng.normal(size=(8, 12))
    exact = A.attribute(model, rows, 1, "exact-shapley", background=bg)
    err = [np.abs(A.attribute(model, rows, 1, "kernelshap", background=bg, samples=s, seed=3) - exact).max()
           for s in (200, 2000)]
    assert err[1] < err[0] and err[1] < 0.05 * np.abs(exact).max()


class _Interacting:
    """A scikit-learn-like model with products of features (so Shapley values are not trivial)."""

    def __init__(self, w):
        self.w = w

    def predict_proba(self, rows):
        rows = np.asarray(rows)
        s = rows @ self.w[1] + 0.5 * rows[:, 0] * rows[:, 1] - 0.3 * rows[:, 2] * rows[:, 5]
        p = 1 / (1 + np.exp(-s))
        return np.stack([1 - p, p], 1)


def test_exact_shapley_of_a_linear_model_is_weight_times_centred_input():
    """For a linear f the interventional Shapley value is w_j·(x_j − mean of the background's column j)."""
    w = np.array([[1.0, -2.0, 0.5, 3.0, 0.0], [0.3, 0.2, -1.0, 1.0, 2.0]])
    model = LinearTable(w)
    rng = np.random.default_rng(3)
    rows, bg = rng.normal(size=(4, 5)), rng.normal(size=(6, 5))
    phi = A.attribute(model, rows, 1, "exact-shapley", background=bg)
    np.testing.assert_allclose(phi, (rows - bg.mean(0)) * w[1], rtol=1e-5, atol=1e-6)


def test_efficiency_and_exact_formula():
    v = np.random.default_rng(4).normal(size=(2, 8))  # a random 3-player game
    phi = exact_shapley_from_values(v, 3)
    np.testing.assert_allclose(phi.sum(1), v[:, 7] - v[:, 0])
    # player 0 by hand: weights 1/3 (S = ∅), 1/6 ({1}), 1/6 ({2}), 1/3 ({1, 2})
    by_hand = (v[:, 1] - v[:, 0]) / 3 + (v[:, 3] - v[:, 2]) / 6 + (v[:, 5] - v[:, 4]) / 6 + (v[:, 7] - v[:, 6]) / 3
    np.testing.assert_allclose(phi[:, 0], by_hand)


def test_kernel_coalitions_enumerate_and_weigh_by_the_shapley_kernel():
    rng = np.random.default_rng(0)
    z, w = kernel_coalitions(5, 1000, rng)
    assert len(z) == 2 ** 5 - 2
    sizes = z.sum(1)
    mass = shapley_kernel_mass(5)
    for k in range(1, 5):
        np.testing.assert_allclose(w[sizes == k], mass[k] / math.comb(5, k))
    z, w = kernel_coalitions(20, 300, rng)
    assert len(z) <= 300 and abs(w.sum() - 1) < 1e-9
    assert len({r.tobytes() for r in z}) == len(z)  # duplicates merged


def test_image_kernelshap_of_a_linear_model_gives_each_patch_its_contribution():
    model = LinearImage(side=4)
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(5))
    a = A.attribute(model, x, [0, 2], "kernelshap", grid=2, samples=100, baseline="zero")
    wx = model.weight_map([0, 2]) * x.numpy()
    for r in (0, 2):
        for c in (0, 2):
            patch = wx[:, :, r:r + 2, c:c + 2].sum(axis=(1, 2, 3))
            np.testing.assert_allclose(a[:, 0, r, c], patch, rtol=1e-5, atol=1e-5)


def test_segments():
    g = grid_segments(10, 7, 3)
    assert g.shape == (10, 7) and set(np.unique(g)) == set(range(9))
    img = np.zeros((3, 24, 24))
    img[:, :, 12:] = 1.0  # two flat halves
    labels = superpixels(img, 8)
    assert labels.shape == (24, 24) and 4 <= labels.max() + 1 <= 8
    for k in range(labels.max() + 1):  # no superpixel straddles the colour edge
        cols = np.nonzero(labels == k)[1]
        assert cols.max() < 12 or cols.min() >= 12
