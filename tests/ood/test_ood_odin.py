"""ODIN on a tiny torch model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core import ood
from core.extract import ModelOutputs
from core.ood import OODError


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 3))
    model.card = {"std": (0.5, 0.25, 0.2)}
    return model.eval()


@pytest.fixture(scope="module")
def images():
    return torch.from_numpy(np.random.default_rng(0).normal(size=(10, 3, 8, 8)).astype(np.float32))


def test_odin_without_perturbation_is_msp(images):
    model = tiny_model()
    with torch.no_grad():
        logits = model(images).double()
    det = ood.create("odin", model=model, temperature=1.0, epsilon=0.0)
    np.testing.assert_allclose(det.score(inputs=images), torch.softmax(logits, 1).max(1).values.numpy(), rtol=1e-6)
    det = ood.create("odin", model=model, epsilon=0.0)  # T = 1000
    np.testing.assert_allclose(det.score_inputs(images), torch.softmax(logits / 1000, 1).max(1).values.numpy(),
                               rtol=1e-6)


def test_odin_perturbation_matches_a_per_sample_reference(images):
    model = tiny_model()
    t, eps = 10.0, 0.01
    std = torch.tensor(model.card["std"]).view(1, 3, 1, 1)
    expected = []
    for x in images:
        x = x[None].clone().requires_grad_(True)
        out = model(x)
        loss = torch.nn.functional.cross_entropy(out / t, out.argmax(1))
        loss.backward()
        sign = (x.grad >= 0).float() * 2 - 1
        with torch.no_grad():
            expected.append(torch.softmax(model(x - eps * sign / std) / t, 1).max().item())
    det = ood.create("odin", model=model, temperature=t, epsilon=eps, batch_size=4)
    assert det.info["input_std"] == pytest.approx([0.5, 0.25, 0.2])
    got = det.score(ModelOutputs(logits=np.zeros((10, 3)), features=None, labels=None, preds=np.zeros(10)),
                    inputs=images)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # an iterable of batches gives the same scores; the perturbation raises the confidence
    np.testing.assert_allclose(det.score_inputs(iter([images[:3], images[3:]])), expected, rtol=1e-5)
    plain = ood.create("odin", model=model, temperature=t, epsilon=0.0).score_inputs(images)
    assert (np.asarray(expected) >= plain - 1e-9).mean() > 0.8


def test_odin_errors(images):
    with pytest.raises(OODError, match="torch model"):
        ood.create("odin")
    with pytest.raises(OODError, match="torch model"):
        ood.create("odin", model="not a model")
    det = ood.create("odin", model=tiny_model())
    with pytest.raises(OODError, match="input images"):
        det.score(None)
    with pytest.raises(OODError, match="must match"):
        det.score(ModelOutputs(logits=np.zeros((3, 3)), features=None, labels=None, preds=np.zeros(3)), inputs=images)
    bad = images.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(OODError, match="NaN"):
        det.score_inputs(bad)
    with pytest.raises(OODError, match="channels"):
        ood.create("odin", model=tiny_model(), input_std=(0.5, 0.5)).score_inputs(images)


def test_odin_leaves_the_model_trainable():
    import core.models as models

    m = models.load("shapes-vit")
    flags = [q.requires_grad for q in m.parameters()]
    ood.create("odin", model=m).fit(None).score_inputs(torch.zeros(2, 3, 64, 64))
    assert [q.requires_grad for q in m.parameters()] == flags
    with pytest.raises(OODError):
        ood.create("odin", model=m).fit(None).score_inputs(torch.zeros(2, 3, 8, 5))
    assert [q.requires_grad for q in m.parameters()] == flags
