"""Workflows on stored model outputs: data without metadata (label and features) and Shapes datasets."""
import numpy as np
import pytest
import torch
from shift_worlds import DictCache

from core import shift
from core.data import load
from core.outputs import ModelOutputs
from core.shift import ShiftError

D, C = 12, 3


def cluster_outputs(n, seed, prior=(1 / 3, 1 / 3, 1 / 3), move_class0=0.0):
    """Features x | y ~ N(μ_y, I) (μ_0 moved by ``move_class0`` towards μ_1);
    the logits are a fixed linear head tuned to the unmoved clusters."""
    rng = np.random.default_rng(seed)
    mu = np.zeros((C, D))
    mu[0, 0], mu[1, 1], mu[2, 1], mu[2, 2] = 2.5, 2.5, 1.5, 1.5  # classes 1 and 2 are close, class 0 is easy
    y = rng.choice(C, n, p=prior)
    x = mu[y] + rng.normal(size=(n, D))
    x[y == 0] += move_class0 * (mu[1] - mu[0]) / np.linalg.norm(mu[1] - mu[0])
    w, b = mu, -0.5 * (mu ** 2).sum(1)
    logits = x @ w.T + b
    return ModelOutputs(logits=logits, features=x, labels=y, preds=logits.argmax(1), head_weight=w, head_bias=b,
                        meta={"model": "clusters"})


@pytest.mark.parametrize("kind, target, main", [
    ("label shift", dict(prior=(0.7, 0.2, 0.1)), "label"),
    ("conditional shift", dict(move_class0=1.5), "features"),
])
def test_outputs_without_metadata_split_label_shift_from_conditional_shift(kind, target, main):
    src, tgt = cluster_outputs(2000, 1), cluster_outputs(2000, 2, **target)
    res = shift.explain_outputs_shift(src, tgt, metric="log_loss", n_components=4, seed=0)
    assert res.nodes == ["label", "features"] and res.mechanism_names["features"] == "P(features | label)"
    assert abs(res.total) > 0.05, kind
    assert res.attributions[main] / res.total >= 0.8, (kind, res.attributions)
    assert "principal components of the features" in res.variables


def test_outputs_without_features_use_log_probabilities_and_labels_are_required():
    src, tgt = cluster_outputs(400, 1), cluster_outputs(400, 2)
    bare = ModelOutputs(logits=src.logits, features=None, labels=src.labels, preds=src.preds)
    res = shift.explain_outputs_shift(bare, tgt.subset(np.arange(400)), n_components=3, classifier="logistic",
                                      direction="features->label")
    assert res.nodes == ["features", "label"] and "log-probabilities" in res.variables
    unlabelled = ModelOutputs(logits=src.logits, features=src.features, labels=None, preds=src.preds)
    with pytest.raises(ShiftError, match="no labels"):
        shift.explain_outputs_shift(unlabelled, tgt)


@pytest.fixture(scope="module")
def shapes_pair():
    return load("shapes", split="test", n=400, seed=0), load("shapes", split="test", n=400, seed=1, shift="background")


def factor_model_outputs(ds):
    """Stand-in for a model that trusts the plain and gradient backgrounds it was trained on: its logit for
    the true class is 4 on those and 0.5 on the textured ones (no image is rendered through a network)."""
    textured = ds.factors["bg_type"].isin(["stripes", "blotches"]).to_numpy()
    logits = np.zeros((len(ds), 6))
    logits[np.arange(len(ds)), ds.labels] = np.where(textured, 0.5, 4.0)
    return ModelOutputs(logits=logits, features=None, labels=ds.labels, preds=logits.argmax(1), meta={"model": "stand-in"})


def test_shapes_workflow_attributes_a_background_shift_to_the_background(shapes_pair):
    """Textured backgrounds never occur in the source: the source alone cannot represent the target, but
    the target side can, so the overlap-aware estimate still finds the mechanism."""
    ds_s, ds_t = shapes_pair
    res = shift.explain_shapes_shift(factor_model_outputs(ds_s), factor_model_outputs(ds_t), ds_s, ds_t,
                                     metric="log_loss")
    assert res.changed_mechanisms == ["background"] and "Shapes factor table" in res.variables
    assert res.nodes == ["class", "colour", "background", "size", "position", "rotation", "marker", "noise"]
    assert res.total > 0.5 and res.attributions["background"] / res.total >= 0.9
    bg = next(r for r in res.diagnostics.mechanisms if r.mechanism.node == "background")
    assert bg.source_coverage < 0.05 and bg.target_coverage < 0.05  # disjoint supports, and said so
    assert any("barely overlap" in w for w in res.diagnostics.warnings)
    textured = ds_s.factors["bg_type"].isin(["stripes", "blotches"]).to_numpy()
    assert not textured.any()
    source_only = shift.explain_shapes_shift(factor_model_outputs(ds_s), factor_model_outputs(ds_t), ds_s, ds_t,
                                             metric="log_loss", estimator="source")
    assert source_only.attributions["background"] / source_only.total < 0.5  # the paper's estimator cannot see it
    assert source_only.diagnostics.unidentified


def test_shapes_workflow_checks_its_inputs(shapes_pair):
    ds_s, ds_t = shapes_pair
    out_s, out_t = factor_model_outputs(ds_s), factor_model_outputs(ds_t)
    with pytest.raises(ShiftError, match="hold 399 rows but the target dataset 400"):
        shift.explain_shapes_shift(out_s, out_t.subset(np.arange(399)), ds_s, ds_t)
    with pytest.raises(ShiftError, match="labels differ"):
        shift.explain_shapes_shift(out_t, out_s, ds_s, ds_t)
    noise = load("noise", n=10)
    with pytest.raises(ShiftError, match="no factor table"):
        shift.shapes_variables(noise)


class Tiny(torch.nn.Module):
    """A 6-class linear model on the mean colour, so a case runs without the shipped weights."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(3, 6)
        self.card = {"name": "tiny", "input_size": [3, 64, 64]}

    def forward(self, x):
        return self.head(x.mean((2, 3)))


def test_shapes_case_runs_the_model_once_per_dataset():
    cache = DictCache()
    model = Tiny()
    case = shift.shapes_case(model, "label-prior", n=60, seed=3, cache=cache)
    assert case.changed_mechanisms == ["class"] and len(case.outputs_source) == 60 and cache.computed == 2
    again = shift.shapes_case(model, "label-prior", n=60, seed=3, cache=cache)
    assert cache.computed == 2 and again.outputs_target is case.outputs_target
    assert case.nbytes > case.outputs_source.nbytes
    with pytest.raises(ShiftError, match="Unknown Shapes shift preset"):
        shift.shapes_case(model, "rain")
