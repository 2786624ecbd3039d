"""Occlusion, RISE, feature ablation and permutation against closed forms and each other."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from attribution_models import LinearImage, LinearTable, TinyCNN
from torch import nn

from core import attribution as A
from core.attribution.perturbation import rise_masks


class PixelNet(nn.Module):
    """A nonlinear model on one-channel 5×5 images."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 25, 3)
        self.card = {"mean": [0.0], "std": [1.0]}

    def forward(self, x):
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


class FlatPixelNet(nn.Module):
    """The same network reading the pixels as a table row of 25 features."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x.reshape(-1, 1, 5, 5))


def test_occlusion_with_a_one_pixel_patch_equals_feature_ablation():
    net = PixelNet()
    x = torch.randn(3, 1, 5, 5, generator=torch.Generator().manual_seed(1))
    targets = [0, 1, 2]
    occ = A.attribute(net, x, targets, "occlusion", patch=1, stride=1, baseline="zero")
    abl = A.attribute(FlatPixelNet(net), x.reshape(3, 25).numpy(), targets, "feature-ablation", baseline="zero")
    np.testing.assert_allclose(occ.reshape(3, 25), abl, rtol=1e-5, atol=1e-6)


def test_occlusion_of_a_linear_model_credits_each_window():
    """Non-overlapping windows, zero baseline: every pixel gets its window's Σ w·x (all channels)."""
    model = LinearImage(side=4)
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    a = A.attribute(model, x, [1, 2], "occlusion", patch=2, stride=2, baseline="zero")
    wx = model.weight_map([1, 2]) * x.numpy()
    for r in (0, 2):
        for c in (0, 2):
            window = wx[:, :, r:r + 2, c:c + 2].sum(axis=(1, 2, 3))
            np.testing.assert_allclose(a[:, :, r:r + 2, c:c + 2], np.broadcast_to(window[:, None, None, None],
                                                                                    (2, 3, 2, 2)), rtol=1e-5, atol=1e-6)


def test_occlusion_agrees_with_captum():
    captum = pytest.importorskip("captum.attr")
    model = TinyCNN()
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    ours = A.attribute(model, x, [1, 3], "occlusion", patch=4, stride=2, baseline="zero")
    ref = captum.Occlusion(model).attribute(x, target=[1, 3], sliding_window_shapes=(3, 4, 4), strides=(3, 2, 2),
                                            baselines=0).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


def test_rise_masks_are_smooth_shifted_and_keep_a_share_p():
    g = torch.Generator().manual_seed(0)
    m = rise_masks(2000, 7, 0.3, 40, 40, g)
    assert m.shape == (2000, 40, 40) and m.min() >= 0 and m.max() <= 1
    assert abs(m.mean().item() - 0.3) < 0.02
    # bilinear upsampling of a 7×7 grid: neighbouring pixels differ by at most one cell step / 6 pixels
    assert (m[:, 1:] - m[:, :-1]).abs().max() <= 1 / 5
    # the random shift puts cell edges anywhere: every pixel is kept about equally often
    coverage = m.mean(0)
    assert coverage.std() < 0.03


def test_rise_of_a_constant_model_is_zero_when_centred():
    """A model that ignores its input scores every mask the same: the centred map is exactly 0 and the
    paper's map is that score times the coverage Σ Mᵢ/(N·p)."""
    model = LinearImage(side=8)
    with torch.no_grad():
        model.fc.weight.zero_()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    centred = A.attribute(model, x, [0, 1], "rise", masks=64, grid=3, p=0.5)
    np.testing.assert_allclose(centred, 0.0, atol=1e-9)
    raw = A.attribute(model, x, [0, 1], "rise", masks=64, grid=3, p=0.5, centre=False)
    prob = torch.softmax(model.fc.bias.detach(), 0).numpy()[[0, 1]]
    g = torch.Generator().manual_seed(0)
    coverage = rise_masks(64, 3, 0.5, 8, 8, g).mean(0).numpy() / 0.5
    np.testing.assert_allclose(raw[:, 0], prob[:, None, None] * coverage[None], rtol=1e-5)


def test_rise_finds_the_region_the_model_reads_and_ignores_batching():
    class Corner(nn.Module):  # the score of class 1 rises with the top-left quadrant's brightness
        card = {"mean": [0.0] * 3, "std": [1.0] * 3}

        def forward(self, x):
            s = x[:, :, :8, :8].mean((1, 2, 3)) * 4
            return torch.stack([torch.zeros_like(s), s], 1)

    x = torch.ones(2, 3, 16, 16)
    a = A.attribute(Corner(), x, 1, "rise", masks=300, grid=4, seed=1)
    b = A.attribute(Corner(), x, 1, "rise", masks=300, grid=4, seed=1, batch_size=7)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    inside, outside = a[:, 0, :8, :8].mean(), a[:, 0, 8:, 8:].mean()
    assert inside > 0 > outside or inside > outside + 0.05


def test_feature_ablation_and_permutation_of_a_linear_table_model():
    w = np.array([[0.5, -1.0, 2.0, 0.0], [1.0, 1.0, -1.0, 3.0]])
    model = LinearTable(w)
    rows = np.array([[1.0, 2.0, -1.0, 0.5], [0.0, -2.0, 1.0, 1.0], [3.0, 0.0, 0.0, -1.0]])
    bg = np.array([[0.2, -0.3, 0.4, 1.0]] * 5)  # identical rows: every permutation donates the same values
    ref = (rows - bg[0]) * w[1]
    np.testing.assert_allclose(A.attribute(model, rows, 1, "feature-ablation", background=bg), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(A.attribute(model, rows, 1, "permutation", background=bg, repeats=3), ref, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(A.attribute(model, rows, 1, "feature-ablation", baseline="zero"), rows * w[1], rtol=1e-5)


def test_permutation_in_expectation_on_a_scikit_learn_model():
    """With many repeats the mean over samples of φ_j is the mean score drop when column j is permuted;
    for a model that ignores a column it is 0 exactly."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = (x[:, 0] > 0).astype(int)
    clf = LogisticRegression().fit(x[:, :2], y)

    class Wide:  # reads three columns, uses the first two
        def predict_proba(self, rows):
            return clf.predict_proba(np.asarray(rows)[:, :2])

    phi = A.attribute(Wide(), x[:20], 1, "permutation", background=x, repeats=5)
    assert phi.shape == (20, 3)
    np.testing.assert_allclose(phi[:, 2], 0.0, atol=1e-12)
    assert np.abs(phi[:, 0]).mean() > 5 * np.abs(phi[:, 1]).mean()
