"""The suppressor preset (after Wilming et al. 2023): the marker is independent of the label, and a
model needs it to read the class."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from core import data
from core.data.shapes import ID_CLASSES, render_factors

N = 6000
SIZE = 32


def _best_accuracy(features: pd.DataFrame, labels: np.ndarray) -> float:
    """The Bayes accuracy of predicting the label from discrete features: every feature combination
    predicts its most frequent label (on a sample this large it is the population's optimum)."""
    table = pd.crosstab([features[c] for c in features.columns], labels)
    return float(table.max(axis=1).sum() / table.to_numpy().sum())


def test_marker_is_independent_of_the_label():
    f = data.load("shapes", n=N, seed=11, image_size=SIZE, shift="suppressor").factors
    table = pd.crosstab(f["label"], f["marker"])
    assert stats.chi2_contingency(table.to_numpy())[1] > 1e-3
    # every class carries the marker about half the time
    share = f.groupby("label")["marker"].mean()
    assert np.allclose(share, 0.5, atol=0.05)
    # in the default world the marker does depend on the class (the preset changed that)
    base = data.load("shapes", n=N, seed=11, image_size=SIZE).factors
    assert stats.chi2_contingency(pd.crosstab(base["label"], base["marker"]).to_numpy())[1] < 1e-8


def test_a_model_must_use_the_marker():
    f = data.load("shapes", n=N, seed=12, image_size=SIZE, shift="suppressor").factors
    y = f["label"].to_numpy()
    shape_only = _best_accuracy(f[["shape"]], y)
    marker_only = _best_accuracy(f[["marker"]], y)
    both = _best_accuracy(f[["shape", "marker"]], y)
    # the drawn shape leaves two candidate classes, the marker alone says nothing, together they decide
    assert 0.45 < shape_only < 0.55
    assert marker_only < 1 / len(ID_CLASSES) + 0.03
    assert both == 1.0
    # the drawn shape is the next class's exactly when the distractor (and so the marker) is on
    k = len(ID_CLASSES)
    drawn = f["shape"].map(ID_CLASSES.index).to_numpy()
    assert np.array_equal(drawn, (y + f["distractor"].to_numpy()) % k)
    assert np.array_equal(f["marker"].to_numpy(), f["distractor"].to_numpy())


def test_images_show_the_drawn_shape_and_the_marker():
    ds = data.load("shapes", n=40, seed=13, image_size=SIZE, shift="suppressor")
    f = ds.factors
    assert ds.changed_mechanisms == ["distractor", "marker"]
    assert (f["distractor"] == 1).any() and (f["distractor"] == 0).any()
    assert np.array_equal(ds.masks["marker"].any(axis=(1, 2)), f["marker"].to_numpy() == 1)
    # rendering the drawn shape under its own class name gives the same pixels
    relabelled = f.assign(class_name=f["shape"]).drop(columns=["shape"])
    images, objects, _ = render_factors(relabelled, SIZE, _render_seed(ds))
    assert np.array_equal(objects, ds.masks["object"])
    assert np.array_equal(images, ds.images)


def _render_seed(ds) -> int:
    from core.data.shapes import split_seed

    return split_seed(ds.params["seed"], ds.params["split"], "shapes/px")


def test_default_world_draws_each_class_shape():
    f = data.load("shapes", n=200, seed=14, image_size=SIZE).factors
    assert (f["distractor"] == 0).all()
    assert (f["shape"] == f["class_name"]).all()
