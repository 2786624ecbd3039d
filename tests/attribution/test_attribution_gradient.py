"""Gradient methods against closed forms (linear models), completeness, and Captum."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from attribution_models import LinearImage, LinearTable, TinyCNN

from core import attribution as A
from core.attribution._image import image_baseline
from core.attribution.gradient import IG_RULES, ig_alphas


@pytest.fixture(scope="module")
def linear():
    return LinearImage()


@pytest.fixture(scope="module")
def x():
    return torch.randn(5, 3, 4, 4, generator=torch.Generator().manual_seed(1))


TARGETS = np.array([0, 1, 2, 0, 1])


@pytest.mark.parametrize("baseline", ["zero", "black", "blur", "noise", "mean"])
@pytest.mark.parametrize("rule", IG_RULES)
def test_integrated_gradients_of_a_linear_model_is_exact(linear, x, baseline, rule):
    """For f = w·x + b the path gradient is w everywhere, so IG = (x − x₀)·w whatever the rule."""
    ig = A.attribute(linear, x, TARGETS, "integrated-gradients", baseline=baseline, rule=rule, steps=7, seed=3)
    x0 = image_baseline(linear, x, baseline, 4.0, 3).numpy()
    np.testing.assert_allclose(ig, (x.numpy() - x0) * linear.weight_map(TARGETS), rtol=1e-5, atol=1e-6)


def test_gradient_x_input_and_saliency_of_a_linear_model(linear, x):
    w = linear.weight_map(TARGETS)
    np.testing.assert_allclose(A.attribute(linear, x, TARGETS, "grad-x-input"), w * x.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(A.attribute(linear, x, TARGETS, "saliency"), np.abs(w), rtol=1e-6)


def test_smoothgrad_of_a_linear_model_is_the_weight_and_vargrad_zero(linear, x):
    w = linear.weight_map(TARGETS)
    np.testing.assert_allclose(A.attribute(linear, x, TARGETS, "smoothgrad", samples=6), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(A.attribute(linear, x, TARGETS, "vargrad", samples=6), 0.0, atol=1e-8)


def test_integrated_gradients_completeness_on_a_nonlinear_cnn():
    model = TinyCNN()
    x = torch.randn(4, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    e = A.explain(model, x, None, "integrated-gradients", steps=50)
    with torch.no_grad():
        logits = model(x)
        base = model(torch.zeros_like(x))
    t = torch.as_tensor(e.targets)
    delta = (logits.gather(1, t[:, None]) - base.gather(1, t[:, None]))[:, 0].numpy()
    total = e.values.reshape(4, -1).sum(1)
    assert np.all(np.abs(total - delta) <= 0.01 * np.abs(delta))
    np.testing.assert_allclose(e.info["completeness_gap"], np.abs(total - delta) / np.abs(delta), rtol=1e-3, atol=1e-6)


def test_ig_rules_integrate_polynomials():
    """Gauss–Legendre with n nodes is exact up to degree 2n−1; the trapezoid's error shrinks as 1/n²."""
    a, w = ig_alphas(4, "gausslegendre")
    assert abs(np.sum(w * a ** 7) - 1 / 8) < 1e-12
    errs = [abs(np.sum(w * a ** 2) - 1 / 3) for a, w in (ig_alphas(n, "riemann_trapezoid") for n in (11, 21))]
    assert errs[1] < errs[0] / 3.5


def test_noise_methods_do_not_depend_on_the_batch_size():
    model = TinyCNN()
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    a = A.attribute(model, x, None, "smoothgrad", samples=7, seed=5)
    b = A.attribute(model, x, None, "smoothgrad", samples=7, seed=5, batch_size=4)
    c = A.attribute(model, x, None, "smoothgrad", samples=7, seed=6)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert not np.allclose(a, c)


def test_gradient_methods_on_a_torch_table_model():
    w = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    model = LinearTable(w)
    rows = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])
    bg = np.array([[0.0, 1.0, 1.0], [2.0, 1.0, 3.0]])
    ig = A.attribute(model, rows, 1, "integrated-gradients", baseline="mean", background=bg, steps=5)
    np.testing.assert_allclose(ig, (rows - bg.mean(0)) * w[1], rtol=1e-5)
    assert ig.dtype == np.float64 and ig.shape == rows.shape
    np.testing.assert_allclose(A.attribute(model, rows, 0, "grad-x-input"), rows * w[0], rtol=1e-6)


def test_integrated_gradients_agree_with_captum():
    captum = pytest.importorskip("captum.attr")
    model = TinyCNN()
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    targets = [0, 2, 3]
    for rule in IG_RULES:
        ours = A.attribute(model, x, targets, "integrated-gradients", steps=20, rule=rule, baseline="zero")
        ref = captum.IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=targets, n_steps=20,
                                                           method=rule).detach().numpy()
        if rule == "riemann_trapezoid":  # Captum weighs the 20 points by 1/20, not 1/19 (see ig_alphas)
            ref = ref * 20 / 19
        assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max()
