"""OOD detection with the shipped Shapes ViT on the built-in benchmark (near-OOD shapes, far-OOD sets).

Measured with the shipped weights (fit on 1,500 train images, 400 per test set): feature-space
detectors separate noise almost perfectly (ViM 0.99, Mahalanobis 0.99, KNN 0.98), but the
logit-only scores do not reach the 0.95 the OOD issue asks for (MSP 0.92, energy 0.89): the model
is confident on uniform noise and on upscaled digits. That target stays open; the tests below pin
what holds today so that a regression shows.
"""
import numpy as np
import pytest

import core.data as data
import core.models as models
import core.ood as ood
from core.extract import run

pytestmark = pytest.mark.slow
# detectors that model the density or the subspace of ID features
FEATURE_DENSITY = ["mahalanobis", "rmds", "knn", "vim", "residual", "wdiscood", "conjnorm"]


@pytest.fixture(scope="module")
def vit_outputs():
    model = models.load("shapes-vit")
    fit = run(model, data.load("shapes", split="train", n=1500, seed=0), batch_size=250)
    sets = {name: run(model, data.load(name, split="test", n=400, seed=0), batch_size=250)
            for name in ("shapes", "shapes-near-ood", "noise", "textures")}
    sets["digits"] = run(model, data.load("digits", split="test"), batch_size=250)
    return fit, sets


def auroc(det, sets, ood_name):
    return ood.metrics(det.score(sets["shapes"]), det.score(sets[ood_name]))["auroc"]


@pytest.mark.parametrize("name", ["vim", "mahalanobis", "knn", "wdiscood"])
def test_far_ood_noise_is_easy_in_feature_space(vit_outputs, name):
    fit, sets = vit_outputs
    assert auroc(ood.create(name).fit(fit), sets, "noise") >= 0.95


@pytest.mark.parametrize("name", ["energy", "msp"])
def test_logit_scores_flag_noise_and_textures(vit_outputs, name):
    fit, sets = vit_outputs
    det = ood.create(name).fit(fit)
    assert auroc(det, sets, "textures") >= 0.95
    assert auroc(det, sets, "noise") >= 0.85  # the 0.95 is not met yet (see the module docstring)


def test_near_ood_is_harder_than_far_ood_for_feature_detectors(vit_outputs):
    fit, sets = vit_outputs
    harder = {}
    for name in FEATURE_DENSITY:
        det = ood.create(name).fit(fit)
        near = auroc(det, sets, "shapes-near-ood")
        far = np.mean([auroc(det, sets, s) for s in ("noise", "textures", "digits")])
        harder[name] = near < far
    assert np.mean(list(harder.values())) >= 2 / 3, harder
