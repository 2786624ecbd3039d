"""core.models.tabular: scikit-learn models on tables, with exact linear heads where they exist."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.datasets import load_breast_cancer, load_wine

from core.data.dataset import Dataset
from core.extract import ExtractError, run
from core.models import ModelError
from core.models.tabular import TabularModel, available_tabular, run_tabular, train_tabular

FAST = {  # small settings so the whole module runs in seconds
    "logistic-regression": {},
    "gradient-boosting": {"max_iter": 50},
    "random-forest": {"n_estimators": 50},
    "mlp": {"hidden_layer_sizes": (32,), "max_iter": 400},
}


def _table(loader, name) -> Dataset:
    bunch = loader(as_frame=True)
    frame = bunch.frame.rename(columns={"target": "label"})
    return Dataset(name=name, kind="table", labels=frame["label"].to_numpy().astype(np.int64),
                   class_names=[str(c) for c in bunch.target_names], frame=frame, label="label")


@pytest.fixture(scope="module")
def cancer() -> Dataset:
    return _table(load_breast_cancer, "breast-cancer")


@pytest.fixture(scope="module")
def wine() -> Dataset:
    return _table(load_wine, "wine")


@pytest.fixture(scope="module")
def trained(cancer, wine) -> dict[tuple[str, str], TabularModel]:
    return {(kind, ds.name): train_tabular(kind, ds, seed=0, **FAST[kind])
            for kind in available_tabular() for ds in (cancer, wine)}


def _x(ds):
    return ds.table_arrays()[0]


def test_available():
    assert available_tabular() == ["logistic-regression", "gradient-boosting", "random-forest", "mlp"]


@pytest.mark.parametrize("kind", ["logistic-regression", "gradient-boosting", "random-forest", "mlp"])
@pytest.mark.parametrize("data", ["breast-cancer", "wine"])
def test_trains_accurately_and_outputs_have_the_right_shapes(trained, cancer, wine, kind, data):
    ds = cancer if data == "breast-cancer" else wine
    model = trained[(kind, data)]
    card = model.card
    assert card["test_accuracy"] > 0.85, card["test_accuracy"]
    assert card["kind"] == kind and card["class_names"] == ds.class_names and card["feature_names"] == ds.feature_names
    train, test = model.train_index, model.test_index
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(ds)
    assert abs(len(test) / len(ds) - 0.25) < 0.01
    # stratified: every class in both splits in proportion
    for part in (train, test):
        np.testing.assert_allclose(np.bincount(ds.labels[part]) / len(part), np.bincount(ds.labels) / len(ds), atol=0.02)

    out = run(model, ds)  # core.extract.run dispatches to run_tabular
    n, c = len(ds), len(ds.class_names)
    assert out.logits.shape == (n, c) and out.logits.dtype == np.float32
    assert out.features.shape[0] == n and out.preds.shape == (n,)
    np.testing.assert_array_equal(out.labels, ds.labels)
    np.testing.assert_array_equal(out.preds, model.pipeline.predict(_x(ds)))
    np.testing.assert_allclose(softmax(out.logits.astype(np.float64), axis=1), model.pipeline.predict_proba(_x(ds)),
                               atol=1e-5)
    assert out.accuracy() > 0.85
    if kind in ("logistic-regression", "mlp"):
        assert out.head_weight.shape == (c, out.features.shape[1]) and out.head_bias.shape == (c,)
    else:
        assert out.head_weight is None and out.features.shape[1] == len(ds.feature_names)


@pytest.mark.parametrize("kind", ["logistic-regression", "mlp"])
@pytest.mark.parametrize("data", ["breast-cancer", "wine"])
def test_linear_head_is_exact(trained, cancer, wine, kind, data):
    ds = cancer if data == "breast-cancer" else wine
    model = trained[(kind, data)]
    out = run_tabular(model, ds)
    f, w, b = (a.astype(np.float64) for a in (out.features, out.head_weight, out.head_bias))
    np.testing.assert_allclose(f @ w.T + b, out.logits, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(softmax(f @ w.T + b, axis=1), model.pipeline.predict_proba(_x(ds)), atol=1e-6)
    if kind == "logistic-regression":
        np.testing.assert_allclose(f, model.scaler.transform(_x(ds)), rtol=1e-5, atol=1e-5)
        if len(ds.class_names) == 2:  # symmetric form of the single score
            score = model.estimator.decision_function(model.scaler.transform(_x(ds)))
            np.testing.assert_allclose(out.logits[:, 1] - out.logits[:, 0], score, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(out.logits.sum(1), 0, atol=1e-4)


def test_seeded_split_is_deterministic(wine):
    a = train_tabular("logistic-regression", wine, seed=3)
    b = train_tabular("logistic-regression", wine, seed=3)
    c = train_tabular("logistic-regression", wine, seed=4)
    assert a.card["test_index"] == b.card["test_index"] != c.card["test_index"]


def test_columns_are_matched_by_name_and_missing_ones_refused(trained, cancer):
    model = trained[("random-forest", "breast-cancer")]
    reordered = cancer.frame[list(reversed(cancer.frame.columns))].assign(extra=1.0)
    ds = Dataset(name="shuffled", kind="table", labels=cancer.labels, class_names=cancer.class_names,
                 frame=reordered, label="label")
    out = run_tabular(model, ds)
    np.testing.assert_array_equal(out.preds, run_tabular(model, cancer).preds)
    assert out.meta["ignored_columns"] == ["extra"]

    dropped = cancer.frame.drop(columns=["mean radius", "worst area"])
    ds = Dataset(name="dropped", kind="table", labels=cancer.labels, class_names=cancer.class_names,
                 frame=dropped, label="label")
    with pytest.raises(ExtractError, match="lacks 2 feature column.*mean radius"):
        run(model, ds)


def test_image_dataset_refused(trained):
    ds = Dataset(name="imgs", kind="image", labels=np.zeros(2, np.int64), class_names=["a"],
                 images=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ExtractError, match="needs a table"):
        run(trained[("mlp", "wine")], ds)
    with pytest.raises(ModelError, match="needs a table"):
        train_tabular("mlp", ds)


def test_bad_kind_and_params(wine):
    with pytest.raises(ModelError, match="Choose one of"):
        train_tabular("svm", wine)
    with pytest.raises(ModelError, match="Unknown parameter.*n_trees"):
        train_tabular("random-forest", wine, n_trees=3)
    with pytest.raises(ModelError, match="test_size"):
        train_tabular("mlp", wine, test_size=1.5)


def test_labels_remapped_by_class_name(trained, wine):
    model = trained[("logistic-regression", "wine")]
    names = list(reversed(wine.class_names))
    ds = Dataset(name="renamed", kind="table", labels=2 - wine.labels, class_names=names, frame=wine.frame, label="label")
    out = run_tabular(model, ds)
    np.testing.assert_array_equal(out.labels, wine.labels)
