"""ReAGent finds the units a model reads, on tables and images."""
from __future__ import annotations

import numpy as np
import torch
from attribution_models import LinearTable
from torch import nn

from core import attribution as A


def test_reagent_on_a_table_puts_the_weight_on_the_feature_the_model_reads():
    model = LinearTable(np.array([[0.0, 0.0, 0.0, 0.0], [6.0, 0.0, 0.0, 0.0]]))
    rng = np.random.default_rng(0)
    rows = np.c_[np.full(4, 1.5), rng.normal(size=(4, 3))]
    bg = rng.normal(size=(100, 4))
    e = A.explain(model, rows, 1, "reagent", background=bg, keep_ratio=0.25, probes=4, max_steps=40)
    a = e.values
    assert a.shape == rows.shape
    np.testing.assert_allclose(a.sum(1), 1.0, rtol=1e-9)  # an importance distribution over the units
    assert (a.argmax(1) == 0).all()
    assert (e.info["stopped"] > 0).all()


def test_reagent_on_images_finds_the_patch_the_model_reads():
    class Corner(nn.Module):
        card = {"mean": [0.0] * 3, "std": [1.0] * 3}

        def forward(self, x):  # class 1 wins only while the top-left 4×4 patch is bright
            s = 8 * (x[:, :, :4, :4].mean((1, 2, 3)) - 0.5)
            return torch.stack([torch.zeros_like(s), s], 1)

    x = torch.ones(2, 3, 16, 16)
    a = A.attribute(Corner(), x, 1, "reagent", grid=4, baseline="zero", keep_ratio=0.125, probes=3, max_steps=30)
    patch = a[:, 0, :4, :4].mean((1, 2))
    rest = a[:, 0, 4:, 4:].mean((1, 2))
    assert (patch > 3 * rest).all()
