"""OOD detection with the shipped Shapes ViT on the built-in benchmark (near-OOD shapes, far-OOD sets)."""
import numpy as np
import pytest

import core.data as data
import core.models as models
import core.ood as ood
from core.extract import run

pytestmark = pytest.mark.slow


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


@pytest.mark.parametrize("name", ["energy", "msp"])
def test_far_ood_noise_is_easy(vit_outputs, name):
    fit, sets = vit_outputs
    det = ood.create(name).fit(fit)
    assert auroc(det, sets, "noise") >= 0.95


def test_near_ood_is_harder_than_far_ood_for_most_detectors(vit_outputs):
    fit, sets = vit_outputs
    harder = []
    names = [d for d in ood.available() if "model" not in ood.spec(d).needs]
    for name in names:
        det = ood.create(name).fit(fit)
        near = auroc(det, sets, "shapes-near-ood")
        far = np.mean([auroc(det, sets, s) for s in ("noise", "textures", "digits")])
        harder.append(near < far)
    assert np.mean(harder) >= 2 / 3, dict(zip(names, harder))
