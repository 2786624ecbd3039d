"""The built-in dataset registry: names, determinism, splits, parameters and errors."""
from __future__ import annotations

import numpy as np
import pytest

from core import data
from core.data import DataError

EXPECTED = ["shapes", "shapes-near-ood", "noise", "textures", "digits", "breast-cancer", "wine", "diabetes"]
TABLES = ["breast-cancer", "wine", "diabetes"]


def _arrays(ds):
    return ds.images if ds.images is not None else ds.frame.to_numpy()


def _load(name, **kw):
    if data.kind_of(name) == "image":
        kw.setdefault("image_size", 32)
    return data.load(name, **kw)


def test_available_names_and_metadata():
    names = data.available()
    assert set(EXPECTED) <= set(names)
    for name in names:
        assert data.kind_of(name) in ("image", "table")
        text = data.describe(name)
        assert isinstance(text, str) and text and "\n" not in text
    assert data.kind_of("digits") == "image" and data.kind_of("wine") == "table"
    assert "background" in data.shift_presets()
    assert isinstance(data.describe_shift("size"), str)


def test_unknown_name_lists_available():
    with pytest.raises(DataError) as err:
        data.load("cifar")
    for name in EXPECTED:
        assert name in str(err.value)
    with pytest.raises(DataError):
        data.describe("cifar")
    with pytest.raises(DataError):
        data.kind_of("cifar")


@pytest.mark.parametrize("name", EXPECTED)
def test_same_seed_same_data_different_seed_differs(name):
    a = _load(name, n=24, seed=3)
    b = _load(name, n=24, seed=3)
    c = _load(name, n=24, seed=4)
    assert np.array_equal(_arrays(a), _arrays(b)) and np.array_equal(a.labels, b.labels)
    assert a.fingerprint() == b.fingerprint()
    assert not np.array_equal(_arrays(a), _arrays(c))
    assert len(a) == 24 and a.labels.dtype == np.int64


@pytest.mark.parametrize("name", ["shapes", "shapes-near-ood", "digits"])
def test_image_datasets_are_uint8_rgb(name):
    ds = _load(name, n=6, image_size=40)
    assert ds.kind == "image" and ds.images.dtype == np.uint8 and ds.images.shape == (6, 40, 40, 3)
    assert ds.labels.min() >= 0 and ds.labels.max() < len(ds.class_names)


def test_digits_shapes_values_and_split():
    train, test, full = (data.load("digits", split=s) for s in ("train", "test", "all"))
    assert len(full) == 1797 and len(train) + len(test) == 1797
    assert abs(len(test) / 1797 - 0.25) < 0.01
    assert full.images.shape == (1797, 64, 64, 3) and full.images.dtype == np.uint8
    assert full.class_names == [str(d) for d in range(10)]
    assert set(np.unique(full.labels)) == set(range(10))
    # grey digits: all channels equal; bright strokes reach near 255 and the background is 0
    assert np.array_equal(full.images[..., 0], full.images[..., 2])
    assert full.images.max() >= 250 and full.images.min() == 0
    rows_train, rows_test = set(train.params["rows"]), set(test.params["rows"])
    assert not rows_train & rows_test and len(rows_train | rows_test) == 1797
    # stratified: every digit in both splits in about the same proportion
    assert np.all(np.abs(np.bincount(test.labels) / len(test) - np.bincount(train.labels) / len(train)) < 0.02)


def test_digits_resize_matches_pil_bilinear():
    from PIL import Image
    from sklearn.datasets import load_digits

    ds = data.load("digits", split="all", n=None, image_size=16)
    raw = load_digits().images[0]
    grey = np.rint(raw * 255 / 16).astype(np.uint8)
    want = np.asarray(Image.fromarray(grey).resize((16, 16), Image.Resampling.BILINEAR))
    assert np.array_equal(ds.images[0, :, :, 1], want)


def test_partition_does_not_depend_on_seed():
    a = data.load("digits", split="train", n=300, seed=1, image_size=8)
    b = data.load("digits", split="test", n=300, seed=2, image_size=8)
    assert not set(a.params["rows"]) & set(b.params["rows"])
    assert set(data.load("wine", split="test", seed=5).params["rows"]) == set(data.load("wine", split="test").params["rows"])


@pytest.mark.parametrize("name", TABLES)
def test_tables(name):
    train, test, full = (data.load(name, split=s) for s in ("train", "test", "all"))
    assert len(train) + len(test) == len(full)
    assert not set(train.params["rows"]) & set(test.params["rows"])
    for ds in (train, test):
        assert ds.kind == "table" and ds.label == "target"
        assert ds.frame.columns[-1] == "target" and "target" not in ds.feature_names
        assert np.array_equal(ds.frame["target"].to_numpy(), ds.labels)
        assert ds.labels.dtype == np.int64 and set(np.unique(ds.labels)) == set(range(len(ds.class_names)))
        x, y = ds.table_arrays()
        assert x.dtype == np.float64 and x.shape == (len(ds), len(ds.feature_names)) and np.isfinite(x).all()
    shares = [np.bincount(d.labels) / len(d) for d in (train, test)]
    assert np.all(np.abs(shares[0] - shares[1]) < 0.05)


def test_table_details():
    bc, wine, diab = (data.load(n, split="all") for n in TABLES)
    assert len(bc) == 569 and len(bc.feature_names) == 30 and bc.class_names == ["malignant", "benign"]
    assert len(wine) == 178 and len(wine.feature_names) == 13 and len(wine.class_names) == 3
    assert len(diab) == 442 and len(diab.feature_names) == 10
    assert diab.class_names == ["below median", "above median"]
    # binarised at the training median: half of the training rows on each side (up to ties)
    train = data.load("diabetes", split="train")
    assert abs(train.labels.mean() - 0.5) < 0.02
    from sklearn.datasets import load_diabetes

    score = load_diabetes().target
    assert np.array_equal(diab.labels, (score > train.params["threshold"]).astype(np.int64))


def test_threshold_same_for_all_splits():
    ts = {data.load("diabetes", split=s, n=30, seed=s_).params["threshold"] for s in ("train", "test", "all") for s_ in (0, 1)}
    assert len(ts) == 1


def test_n_larger_than_split_returns_whole_split():
    assert len(data.load("wine", split="test", n=10_000)) == len(data.load("wine", split="test"))
    assert len(data.load("wine", split="test", n=0)) == 0


@pytest.mark.parametrize("kwargs", [
    {"split": "validation"},
    {"n": -1},
    {"n": 2.5},
    {"seed": "zero"},
])
def test_bad_arguments(kwargs):
    with pytest.raises(DataError):
        data.load("digits", **kwargs)


def test_shift_only_for_shapes():
    ds = data.load("shapes", n=4, image_size=32, shift="size")
    assert ds.changed_mechanisms == ["size"] and ds.params["shift"] == "size"
    for name in ["digits", "wine", "noise", "shapes-near-ood"]:
        with pytest.raises(DataError, match="shapes"):
            data.load(name, shift="size")
    with pytest.raises(DataError, match="Unknown shift preset"):
        data.load("shapes", n=4, image_size=32, shift="no-such-shift")


def test_params_forwarded_and_checked():
    ds = data.load("shapes", n=200, image_size=32, marker_corr=1.0)
    # rho = 1: even classes always carry the marker, odd classes never do
    assert np.array_equal(ds.factors["marker"].to_numpy(), (ds.labels % 2 == 0).astype(np.int64))
    assert data.load("digits", n=3, image_size=20).images.shape == (3, 20, 20, 3)
    with pytest.raises(DataError, match="marker_corr"):
        data.load("digits", marker_corr=0.5)
    with pytest.raises(DataError, match="image_size"):
        data.load("wine", image_size=32)
    with pytest.raises(DataError, match="image_size"):
        data.load("digits", image_size=4)
    assert "marker_corr" in data.accepted_params("shapes")
