"""The detector registry, parameter specs, and clear errors for bad inputs."""
from __future__ import annotations

import numpy as np
import pytest
from ood_worlds import make_outputs

from core import ood
from core.extract import ModelOutputs
from core.ood import NotFittedError, OODError
from core.ood.base import GROUPS, NEEDS, register

EXPECTED = ["msp", "maxlogit", "energy", "entropy", "gen", "tempscale", "klm", "mahalanobis", "rmds", "knn", "vim",
            "residual", "she", "nnguide", "fdbd", "react", "ash-p", "ash-b", "ash-s", "scale", "dice", "odin",
            "gradnorm", "wdiscood", "conjnorm"]
CLASS_CONDITIONAL = {"mahalanobis", "rmds", "klm", "she", "wdiscood", "conjnorm"}


def test_available_lists_every_detector_in_order():
    assert ood.available() == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_spec_is_complete(name):
    s = ood.spec(name)
    assert s.id == name and s.name and s.group in GROUPS and s.reference
    assert s.needs and s.needs <= set(NEEDS)
    assert "score" in s.description or "score" in s.description.lower()
    assert s.class_conditional == (name in CLASS_CONDITIONAL)
    for p in s.params:
        assert p.type in ("int", "float", "bool", "choice") and p.help
        assert p.validate(p.default, s.name) == p.default
        if p.type == "choice":
            assert p.default in p.choices
    if name != "odin":
        det = ood.create(name)
        assert det.params == s.defaults


def test_groups():
    groups = {n: ood.spec(n).group for n in EXPECTED}
    assert groups["msp"] == "logit" and groups["knn"] == "feature" and groups["react"] == "shaping"
    assert groups["odin"] == "model" and groups["wdiscood"] == groups["conjnorm"] == "paper"


def test_defaults_follow_the_papers():
    d = {n: ood.spec(n).defaults for n in EXPECTED}
    assert d["knn"]["k"] == 50 and d["nnguide"]["k"] == 100 and d["react"]["percentile"] == 90
    assert d["ash-s"]["percentile"] == 90 and d["scale"]["percentile"] == 85 and d["dice"]["percentile"] == 90
    assert d["odin"]["temperature"] == 1000 and d["odin"]["epsilon"] == 0.0014
    assert d["gen"]["gamma"] == 0.1 and d["conjnorm"] == {"p": 2.2, "temperature": 0.05}
    assert d["wdiscood"]["alpha"] == 1e-5


def test_create_validates_parameters():
    with pytest.raises(OODError, match="Unknown OOD detector 'nope'"):
        ood.create("nope")
    with pytest.raises(OODError, match="no parameter.*'kk'.*valid parameters: k"):
        ood.create("knn", kk=3)
    with pytest.raises(OODError, match="whole number"):
        ood.create("knn", k=2.5)
    with pytest.raises(OODError, match=r"must be in \[1"):
        ood.create("knn", k=0)
    with pytest.raises(OODError, match="must be a number"):
        ood.create("energy", temperature="hot")
    with pytest.raises(OODError, match="one of"):
        ood.create("fdbd", normalizer="l1")
    with pytest.raises(OODError, match="True or False"):
        ood.create("wdiscood", normalize=1)
    assert ood.create("vim", dim=None).params["dim"] is None  # optional = automatic
    assert ood.create("msp", model=object()).model is None  # model is ignored where it is not needed


# ---------------------------------------------------------------------------- bad inputs
def no_features(out: ModelOutputs, meta=None) -> ModelOutputs:
    return ModelOutputs(logits=out.logits, features=None, labels=out.labels, preds=out.preds,
                        meta=meta or dict(out.meta))


def test_missing_features_and_head_are_explained(train_outputs):
    npz = no_features(train_outputs, meta={"model": "uploaded outputs", "data": "x.npz"})
    with pytest.raises(OODError, match="needs penultimate features; the uploaded .npz has none"):
        ood.create("knn").fit(npz)
    headless = ModelOutputs(logits=train_outputs.logits, features=train_outputs.features,
                            labels=train_outputs.labels, preds=train_outputs.preds)
    with pytest.raises(OODError, match="linear classification head"):
        ood.create("vim").fit(headless)
    with pytest.raises(OODError, match="linear classification head"):
        ood.create("react").fit(headless)
    assert ood.unavailable_reason("knn", npz) == "KNN needs penultimate features; the uploaded .npz has none " \
                                                "(save a 'features' array [N, D] with it)."
    assert "head" in ood.unavailable_reason("gradnorm", headless)
    assert ood.unavailable_reason("msp", npz) is None
    assert ood.unavailable_reason("knn", train_outputs) is None


def test_unavailable_reasons(train_outputs):
    assert "torch model" in ood.unavailable_reason("odin", train_outputs, has_model=False)
    assert ood.unavailable_reason("odin", train_outputs, has_model=True) is None
    assert "input images" in ood.unavailable_reason("odin", None, has_model=True, has_inputs=False)
    unlabelled = ModelOutputs(logits=train_outputs.logits, features=train_outputs.features, labels=None,
                              preds=train_outputs.preds)
    assert "labels" in ood.unavailable_reason("tempscale", unlabelled)
    assert ood.unavailable_reason("mahalanobis", unlabelled) is None  # falls back to the predictions
    one_class = train_outputs.subset(np.flatnonzero(train_outputs.labels == 0))
    for name in CLASS_CONDITIONAL:
        assert "fewer than 2 classes" in ood.unavailable_reason(name, one_class), name
    with pytest.raises(OODError):
        ood.unavailable_reason("nope", train_outputs)


@pytest.mark.parametrize("name", sorted(CLASS_CONDITIONAL))
def test_single_class_fit_set_is_refused(name, train_outputs):
    one_class = train_outputs.subset(np.flatnonzero(train_outputs.labels == 0))
    with pytest.raises(OODError, match="at least 2 classes"):
        ood.create(name).fit(one_class)


@pytest.mark.parametrize("name", [n for n in EXPECTED if n != "odin"])
def test_nan_empty_and_dimension_mismatch(name, train_outputs, id_outputs):
    det = ood.create(name).fit(train_outputs)
    bad = id_outputs.subset(np.arange(10))
    bad.logits[3, 0] = np.nan
    if bad.features is not None:
        bad.features[4, 1] = np.inf
    with pytest.raises(OODError, match="NaN or inf in [12] of 10 samples"):
        det.score(bad)
    with pytest.raises(OODError, match="at least one sample"):
        det.score(id_outputs.subset(np.arange(0)))
    with pytest.raises(OODError, match="at least one sample"):
        ood.create(name).fit(train_outputs.subset(np.arange(0)))
    spec = ood.spec(name)
    if "features" in spec.needs and "head" not in spec.needs:
        wider = ModelOutputs(logits=id_outputs.logits, features=np.hstack([id_outputs.features] * 2),
                             labels=None, preds=id_outputs.preds)
        with pytest.raises(OODError, match="fitted on outputs with 16-dimensional features.*have 32-dimensional"):
            det.score(wider)
    if "head" in spec.needs and spec.requires_fit:
        other = make_outputs(id_outputs.features, id_outputs.head_weight * 2, id_outputs.head_bias)
        with pytest.raises(OODError, match="different classification head"):
            det.score(other)
    if "head" in spec.needs:
        # outputs without a head (an uploaded .npz) are scored with the head the detector was fitted with
        headless = ModelOutputs(logits=id_outputs.logits, features=id_outputs.features, labels=None,
                                preds=id_outputs.preds)
        np.testing.assert_array_equal(det.score(headless), det.score(id_outputs))
        narrow = ModelOutputs(logits=id_outputs.logits, features=id_outputs.features[:, :8], labels=None,
                              preds=id_outputs.preds)
        with pytest.raises(OODError, match="fitted on outputs with 16-dimensional features.*have 8-dimensional"):
            det.score(narrow)
    if "logits" in spec.needs and "head" not in spec.needs and spec.requires_fit:
        more = ModelOutputs(logits=np.hstack([id_outputs.logits, id_outputs.logits]), features=id_outputs.features,
                            labels=None, preds=id_outputs.preds)
        with pytest.raises(OODError, match="fitted on outputs with 4 classes.*have 8 classes"):
            det.score(more)


@pytest.mark.parametrize("name", [n for n in EXPECTED if ood.spec(n).requires_fit])
def test_score_before_fit(name, id_outputs):
    with pytest.raises(NotFittedError, match=r"call \.fit\(train_outputs\)"):
        ood.create(name).score(id_outputs)


def test_detector_specific_errors(train_outputs):
    unlabelled = ModelOutputs(logits=train_outputs.logits, features=None, labels=None, preds=train_outputs.preds)
    with pytest.raises(OODError, match="needs class labels"):
        ood.create("tempscale").fit(unlabelled)
    with pytest.raises(OODError, match="dim must be smaller than the feature dimension D = 16"):
        ood.create("vim", dim=16).fit(train_outputs)
    with pytest.raises(OODError, match="expects ModelOutputs"):
        ood.create("msp").score(np.zeros((3, 3)))
    one_logit = ModelOutputs(logits=np.zeros((5, 1)), features=None, labels=None, preds=np.zeros(5))
    with pytest.raises(OODError, match="at least 2 logits"):
        ood.create("msp").score(one_logit)


def test_knn_and_nnguide_cap_k_at_the_bank(train_outputs):
    small = train_outputs.subset(np.arange(30))
    assert ood.create("knn").fit(small).info == {"k": 30, "bank_size": 30}
    assert ood.create("nnguide").fit(small).info == {"k": 30, "bank_size": 30}
    det = ood.create("nnguide", k=5).fit(train_outputs)  # 1% of 600 = 6 samples, but at least 5k = 25
    assert det.info == {"k": 5, "bank_size": 25}


def test_declared_assumptions_are_checked_against_the_data(rng):
    w, b = rng.normal(size=(3, 6)).astype(np.float32), np.zeros(3, np.float32)
    relu = make_outputs(np.abs(rng.normal(size=(50, 6))).astype(np.float32), w, b)
    signed = make_outputs(rng.normal(size=(50, 6)).astype(np.float32), w, b)
    assumers = [d for d in ood.available() if ood.spec(d).assumes]
    assert {"ash-p", "ash-b", "ash-s", "scale", "dice"} <= set(assumers)
    for d in assumers:
        assert ood.assumption_notes(d, relu) == []
        (note,) = ood.assumption_notes(d, signed)
        assert ood.spec(d).name in note and "negative" in note
    assert ood.assumption_notes("msp", signed) == [] and ood.assumption_notes("ash-b", None) == []
    with pytest.raises(ValueError, match="unknown assumptions"):
        register("x-test", "X", "logit", {"logits"}, "ref", assumes=("gaussian-features",))

