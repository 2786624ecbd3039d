"""Quality metrics: known vectors, a synthetic model with a known best ranking, and the sanity checks."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from attribution_models import LinearImage, TinyCNN
from torch import nn

from core import attribution as A
from core.attribution import metrics as M


def test_gini_of_known_vectors():
    assert M.sparseness(np.array([0.0, 0.0, 0.0, 1.0])) == pytest.approx(0.75)  # (n−1)/n: one value holds all
    assert M.sparseness(np.ones(7)) == pytest.approx(0.0)
    # [1, 2, 3, 4]: Σ(2i − n − 1)a₍ᵢ₎ = −3 − 2 + 3 + 12 = 10, over n·Σa = 40
    assert M.sparseness(np.array([4.0, -1.0, 3.0, 2.0])) == pytest.approx(0.25)  # |a|, any order
    batch = M.sparseness(np.array([[0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]))
    np.testing.assert_allclose(batch, [0.75, 0.0])
    assert np.isnan(M.sparseness(np.zeros(3)))


def test_entropy_of_known_vectors():
    assert M.complexity(np.ones(8)) == pytest.approx(np.log(8))
    assert M.complexity(np.array([0.0, 5.0, 0.0])) == pytest.approx(0.0)
    p = np.array([0.25, 0.25, 0.5])
    assert M.complexity(np.array([1.0, -1.0, 2.0])) == pytest.approx(-(p * np.log(p)).sum())
    # image maps: the channels are kept in the vector (pass the pixel map to compare per pixel)
    assert M.complexity(np.ones((1, 3, 2, 2)))[0] == pytest.approx(np.log(12))


def test_relevance_mass_and_rank_accuracy():
    mask = np.array([[[True, True], [False, False]]])  # the top row, area share ½
    a = np.array([[[3.0, 1.0], [1.0, -5.0]]])
    # positive relevance only: (3 + 1) / (3 + 1 + 1)
    assert M.relevance_mass_accuracy(a, mask)[0] == pytest.approx(0.8)
    # the two highest values are 3 (inside) and a tie of 1 (one inside, one outside): 1 + ½ of one slot
    assert M.relevance_rank_accuracy(a, mask)[0] == pytest.approx(0.75)
    assert M.relevance_rank_accuracy(np.ones((1, 2, 2)), mask)[0] == pytest.approx(0.5)  # constant map: area share
    assert M.random_map_baseline(mask)[0] == pytest.approx(0.5)
    # channels are summed per pixel before the mask is applied
    a3 = np.repeat(a[:, None], 3, axis=1) / 3
    assert M.relevance_mass_accuracy(a3, mask)[0] == pytest.approx(0.8)
    with pytest.raises(A.AttributionError, match="does not match"):
        M.relevance_mass_accuracy(a, np.ones((1, 3, 3), bool))


class Evidence(nn.Module):
    """Class 1's logit is Σ w·x over pixels with a fixed positive weight map; the best ranking is w·x."""

    def __init__(self, side: int = 8):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.rand(1, 1, side, side, generator=g) ** 4, requires_grad=False)
        self.card = {"mean": [0.0] * 3, "std": [1.0] * 3}

    def forward(self, x):
        s = (x * self.w).sum((1, 2, 3))
        return torch.stack([torch.zeros_like(s) + 2.0, s], 1)


def test_deletion_auc_of_a_perfect_ranking_is_below_a_random_one():
    model = Evidence()
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(1)) + 0.5
    perfect = (x * model.w).detach().numpy()
    rng = np.random.default_rng(0)
    random_map = rng.random(perfect.shape).astype(np.float32)
    d_perfect = M.deletion_auc(model, x, perfect, 1, step=4)
    d_random = M.deletion_auc(model, x, random_map, 1, step=4)
    assert (d_perfect < d_random).all()
    i_perfect = M.insertion_auc(model, x, perfect, 1, step=4, substrate="zero")
    i_random = M.insertion_auc(model, x, random_map, 1, step=4, substrate="zero")
    assert (i_perfect > i_random).all()


def test_deletion_curve_runs_from_the_input_to_the_substrate():
    model = Evidence()
    x = torch.rand(2, 3, 8, 8) + 0.5
    curve = M.deletion_curve(model, x, np.random.default_rng(1).random((2, 3, 8, 8)), 1, step=5)
    assert curve.fractions[0] == 0 and curve.fractions[-1] == 1 and len(curve.fractions) == 14  # ⌈64/5⌉ + 1
    with torch.no_grad():
        start = model(x).softmax(1)[:, 1].numpy()
        end = model(torch.zeros_like(x)).softmax(1)[:, 1].numpy()
    np.testing.assert_allclose(curve.scores[:, 0], start, rtol=1e-6)
    np.testing.assert_allclose(curve.scores[:, -1], end, rtol=1e-6)
    np.testing.assert_allclose(curve.auc(), np.trapezoid(curve.scores, curve.fractions, axis=1))
    flip = M.pixel_flipping_curve(model, x, np.ones((2, 3, 8, 8)), 1, step=64)
    assert flip.scores.shape == (2, 2)


def test_deletion_on_a_table():
    from attribution_models import LinearTable

    model = LinearTable(np.array([[0.0, 0.0, 0.0], [3.0, 1.0, 0.0]]))
    rows = np.array([[1.0, 1.0, 1.0]])
    good, bad = M.deletion_auc(model, rows, np.array([[3.0, 1.0, 0.0]]), 1, substrate="zero"), \
        M.deletion_auc(model, rows, np.array([[0.0, 1.0, 3.0]]), 1, substrate="zero")
    assert good[0] < bad[0]


def test_model_randomisation_changes_gradients_and_leaves_the_model_alone():
    model = TinyCNN()
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    state = copy.deepcopy(model.state_dict())
    res = M.model_randomisation(model, x, None, "saliency", order="cascading")
    assert res.layers == M.randomisable_layers(model) == ["head", "conv2", "conv1"]
    assert res.similarity.shape == (3, 3)
    assert np.nanmean(res.similarity[-1]) < 0.5  # a fully random network's gradients look nothing alike
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    one = M.model_randomisation(model, x, None, "saliency", order="all")
    assert one.layers == ["all layers"] and one.similarity.shape == (1, 3)
    # the same map twice is perfectly similar (the reference passed in is what is compared)
    a = A.attribute(model, x, None, "saliency")
    np.testing.assert_allclose(M.spearman_rows(a, a), 1.0)


def test_max_sensitivity_closed_forms():
    model = LinearImage(side=4)
    x = torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    # the gradient of a linear model does not move: saliency is perfectly stable
    np.testing.assert_allclose(M.max_sensitivity(model, x, [0, 1, 2], "saliency", samples=3), 0.0, atol=1e-7)
    # grad × input moves by w·δ with |δ| ≤ r·range (range 1 here): bounded by r·‖w‖/‖w·x‖
    s = M.max_sensitivity(model, x, [0, 1, 2], "grad-x-input", radius=0.05, samples=4)
    w = model.weight_map([0, 1, 2]).reshape(3, -1)
    bound = 0.05 * np.linalg.norm(w, axis=1) / np.linalg.norm(w * x.numpy().reshape(3, -1), axis=1)
    assert (s > 0).all() and (s <= bound + 1e-6).all()
