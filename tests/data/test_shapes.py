"""The Shapes world: determinism, masks, shift presets and the OOD sets."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from core import data
from core.data import DataError
from core.data.shapes import ID_CLASSES, MECHANISM_COLUMNS, MECHANISM_PARENTS, NEAR_OOD_CLASSES, _hsv_to_rgb

SIZE = 32
CATEGORICAL = {"label", "bg_type", "marker"}


def test_deterministic_and_seed_sensitive():
    a = data.load("shapes", n=16, seed=7, image_size=SIZE)
    b = data.load("shapes", n=16, seed=7, image_size=SIZE)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert all(np.array_equal(a.masks[k], b.masks[k]) for k in ("object", "marker"))
    pd.testing.assert_frame_equal(a.factors, b.factors)
    for other in (data.load("shapes", n=16, seed=8, image_size=SIZE), data.load("shapes", split="train", n=16, seed=7,
                                                                              image_size=SIZE)):
        assert not np.array_equal(a.images, other.images)


def test_dataset_structure():
    ds = data.load("shapes", n=50, image_size=SIZE)
    assert ds.kind == "image" and ds.class_names == ID_CLASSES and ds.changed_mechanisms == []
    assert ds.images.shape == (50, SIZE, SIZE, 3) and ds.images.dtype == np.uint8
    for k in ("object", "marker"):
        assert ds.masks[k].shape == (50, SIZE, SIZE) and ds.masks[k].dtype == np.bool_
    assert np.array_equal(ds.factors["label"].to_numpy(), ds.labels)
    assert list(ds.factors["class_name"]) == [ID_CLASSES[k] for k in ds.labels]
    assert {c for cols in MECHANISM_COLUMNS.values() for c in cols} <= set(ds.factors.columns)


@pytest.mark.parametrize("image_size", [32, 224])
def test_image_sizes(image_size):
    ds = data.load("shapes", n=3, image_size=image_size)
    assert ds.images.shape == (3, image_size, image_size, 3)
    assert ds.masks["object"].any(axis=(1, 2)).all()


def test_image_size_out_of_range():
    with pytest.raises(DataError, match="32 to 224"):
        data.load("shapes", n=2, image_size=16)


@pytest.mark.parametrize("image_size", [32, 64])
def test_object_mask_covers_object_colour(image_size):
    ds = data.load("shapes", n=120, seed=1, image_size=image_size)
    f = ds.factors
    obj = _hsv_to_rgb(f["hue"].to_numpy(), f["sat"].to_numpy(), f["val"].to_numpy()) * 255
    bg = _hsv_to_rgb(f["bg_hue"].to_numpy(), np.full(len(f), 0.35), f["bg_val"].to_numpy()) * 255
    for i in range(len(ds)):
        inside = ds.masks["object"][i] & ~ds.masks["marker"][i]
        assert inside.sum() > 10, f"image {i}: empty object mask"
        pixels = ds.images[i][inside].astype(float)
        # most mask pixels are interior, so the median is the object colour up to pixel noise (sigma 8)
        assert np.abs(np.median(pixels, axis=0) - obj[i]).max() < 12
        # edges blend with the background but the mean stays far closer to the object than to the background
        mean = pixels.mean(axis=0)
        assert np.abs(mean - obj[i]).max() < 25
        assert np.linalg.norm(mean - obj[i]) < 0.5 * np.linalg.norm(mean - bg[i])


def test_marker_mask_iff_marker():
    ds = data.load("shapes", n=200, seed=2, image_size=SIZE)
    has_marker = ds.masks["marker"].any(axis=(1, 2))
    assert np.array_equal(has_marker, ds.factors["marker"].to_numpy() == 1)
    assert 0 < has_marker.mean() < 1
    # the marker sits in the top-left corner
    rows, cols = np.nonzero(ds.masks["marker"].any(axis=0))
    assert rows.max() < SIZE // 4 and cols.max() < SIZE // 4


def test_near_ood():
    ds = data.load("shapes-near-ood", n=40, image_size=SIZE)
    assert ds.class_names == NEAR_OOD_CLASSES and set(ds.factors["class_name"]) <= set(NEAR_OOD_CLASSES)
    assert ds.masks["object"].any(axis=(1, 2)).all()
    assert not set(ds.factors["class_name"]) & set(ID_CLASSES)


@pytest.mark.parametrize("name", ["noise", "textures"])
def test_far_ood_labels(name):
    ds = data.load(name, n=12, image_size=SIZE)
    assert ds.labels.tolist() == [-1] * 12 and ds.class_names == []
    assert ds.images.shape == (12, SIZE, SIZE, 3) and ds.images.dtype == np.uint8
    if name == "textures":
        assert not ds.masks["object"].any() and not ds.masks["marker"].any()
        assert set(ds.factors["bg_type"]) <= {"stripes", "blotches", "checker"}


# ---------------------------------------------------------------------------------------------
# shift presets change only their declared mechanisms

N_SHIFT = 6000


@pytest.fixture(scope="module")
def base_factors():
    return data.load("shapes", n=N_SHIFT, seed=100, image_size=SIZE).factors


def _same_distribution_p(a: pd.Series, b: pd.Series, column: str) -> float:
    if column in CATEGORICAL:
        table = pd.crosstab(np.r_[np.zeros(len(a)), np.ones(len(b))], np.r_[a.to_numpy(), b.to_numpy()])
        table = table.loc[:, table.sum(axis=0) > 0]
        return 1.0 if table.shape[1] < 2 else float(stats.chi2_contingency(table.to_numpy())[1])
    return float(stats.ks_2samp(a.to_numpy(), b.to_numpy()).pvalue)


def _normalised_position(f: pd.DataFrame, axis: str) -> pd.Series:
    """Position given size: where the centre falls in the range that keeps the shape inside (uniform)."""
    margin = 1.05 * f["size"] * SIZE + 1
    return (f[axis] * SIZE - margin) / (SIZE - 2 * margin)


def _mechanism_pvalues(base: pd.DataFrame, shifted: pd.DataFrame, mechanism: str) -> list[float]:
    """p-values that each column of ``mechanism`` has the same conditional distribution given its parents."""
    parents = MECHANISM_PARENTS[mechanism]
    out = []
    for col in MECHANISM_COLUMNS[mechanism]:
        if parents == ["class"]:
            for k in range(len(ID_CLASSES)):
                out.append(_same_distribution_p(base.loc[base.label == k, col], shifted.loc[shifted.label == k, col], col))
        elif parents == ["size"]:
            out.append(_same_distribution_p(_normalised_position(base, col), _normalised_position(shifted, col), col))
        else:
            out.append(_same_distribution_p(base[col], shifted[col], col))
    return out


@pytest.mark.parametrize("preset", data.shift_presets())
def test_shift_changes_only_declared_mechanisms(preset, base_factors):
    ds = data.load("shapes", n=N_SHIFT, seed=200, image_size=SIZE, shift=preset)
    declared = ds.changed_mechanisms
    assert declared and set(declared) <= set(MECHANISM_COLUMNS)
    assert isinstance(data.describe_shift(preset), str)
    for mechanism in MECHANISM_COLUMNS:
        p = _mechanism_pvalues(base_factors, ds.factors, mechanism)
        if mechanism in declared:
            assert min(p) < 1e-8, f"{preset}: declared mechanism {mechanism} did not change (min p = {min(p):.2g})"
        else:
            assert min(p) > 1e-4, f"{preset}: undeclared mechanism {mechanism} changed (min p = {min(p):.2g})"


def test_unshifted_control(base_factors):
    """The same test between two unshifted samples finds no change anywhere."""
    other = data.load("shapes", n=N_SHIFT, seed=300, image_size=SIZE).factors
    for mechanism in MECHANISM_COLUMNS:
        assert min(_mechanism_pvalues(base_factors, other, mechanism)) > 1e-4


def test_shift_none_is_no_shift():
    a = data.load("shapes", n=8, image_size=SIZE, shift="none")
    b = data.load("shapes", n=8, image_size=SIZE)
    assert np.array_equal(a.images, b.images) and a.changed_mechanisms == []
