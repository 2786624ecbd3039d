"""Built-in datasets: the Shapes world and its OOD sets, scikit-learn digits, and three small tables.

Every loader has the signature ``loader(split, n, seed, **params) -> Dataset``.

Splits of the scikit-learn datasets
-----------------------------------
``split`` is ``"train"`` (75%), ``"test"`` (25%) or ``"all"``. The partition itself is fixed
(drawn once with :data:`PARTITION_SEED`, stratified by class), so ``train`` and ``test`` never
overlap whatever ``seed`` is chosen: a model fitted on ``train`` with one seed can be evaluated on
``test`` with another without leakage. ``seed`` chooses the subsample when ``n`` is given
(``n`` larger than the split returns the whole split). Rows keep their original order.

Diabetes
--------
scikit-learn's diabetes target is a continuous disease-progression score. Here it is binarised at
the median of the *training* partition: ``"above median"`` (label 1) when the score is strictly
greater than that median, ``"below median"`` (label 0) otherwise. The threshold is stored in
``params["threshold"]`` and the raw score is not part of the features.
"""
from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np
import pandas as pd

from . import shapes
from .dataset import DataError, Dataset

PARTITION_SEED = 0
TEST_FRACTION = 0.25
SPLITS = ("train", "test", "all")
LABEL_COLUMN = "target"


@dataclass(frozen=True)
class BuiltinDataset:
    name: str
    kind: str  # "image" or "table"
    description: str
    loader: Callable[..., Dataset]
    params: frozenset[str]  # keyword parameters the loader accepts besides split, n, seed
    shiftable: bool = False


# ---------------------------------------------------------------------------------------------
# splitting and subsampling


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(repr(s) for s in SPLITS)}, got {split!r}.")


def _check_n(n: int | None) -> None:
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0):
        raise DataError(f"n must be a non-negative integer or None, got {n!r}.")


def _seed_for(seed: int, tag: str) -> int:
    return zlib.crc32(f"{tag}|{seed}".encode()) & 0x7FFFFFFF


def partition(strata: np.ndarray, split: str, test_fraction: float = TEST_FRACTION) -> np.ndarray:
    """Sorted row indices of ``split`` in a fixed, stratified train/test partition.

    Within each stratum, a fixed permutation puts ``round(test_fraction * size)`` rows in test
    (at least one when the stratum has two or more rows) and the rest in train.
    """
    _check_split(split)
    strata = np.asarray(strata)
    if split == "all":
        return np.arange(len(strata))
    rng = np.random.default_rng(PARTITION_SEED)
    is_test = np.zeros(len(strata), bool)
    for value in np.unique(strata):
        rows = np.flatnonzero(strata == value)
        rows = rows[rng.permutation(len(rows))]
        k = int(round(test_fraction * len(rows)))
        if len(rows) >= 2:
            k = min(max(k, 1), len(rows) - 1)
        is_test[rows[:k]] = True
    return np.flatnonzero(is_test if split == "test" else ~is_test)


def subsample(index: np.ndarray, n: int | None, seed: int, tag: str) -> np.ndarray:
    """``n`` rows of ``index`` chosen with ``seed`` (all of them when n is None or too large), sorted."""
    _check_n(n)
    if n is None or n >= len(index):
        return index
    rng = np.random.default_rng(_seed_for(seed, tag))
    return np.sort(rng.choice(index, size=int(n), replace=False))


# ---------------------------------------------------------------------------------------------
# digits


@lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float64), d.target.astype(np.int64)


def upscale_digits(images8: np.ndarray, image_size: int) -> np.ndarray:
    """8x8 digit images with values 0..16 -> RGB uint8 [N, S, S, 3] (bilinear resize)."""
    from PIL import Image

    grey = np.clip(np.rint(images8 * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    out = np.empty((len(grey), image_size, image_size, 3), np.uint8)
    for i, g in enumerate(grey):
        big = np.asarray(Image.fromarray(g, mode="L").resize((image_size, image_size), Image.Resampling.BILINEAR))
        out[i] = big[:, :, None]
    return out


def load_digits(split: str = "test", n: int | None = None, seed: int = 0, image_size: int = 64) -> Dataset:
    """scikit-learn's 1797 handwritten digits (8x8), upscaled to ``image_size`` RGB."""
    _check_split(split)
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or not 8 <= image_size <= 512:
        raise DataError(f"image_size must be an integer between 8 and 512, got {image_size!r}.")
    raw, target = _digits_raw()
    index = subsample(partition(target, split), n, seed, f"digits/{split}")
    return Dataset(
        name="digits", kind="image", labels=target[index].copy(), class_names=[str(d) for d in range(10)],
        images=upscale_digits(raw[index], int(image_size)),
        params={"n": n, "seed": seed, "split": split, "image_size": int(image_size), "rows": index.tolist()},
    )


# ---------------------------------------------------------------------------------------------
# tables


def _table_dataset(name: str, features: pd.DataFrame, labels: np.ndarray, class_names: list[str], index: np.ndarray,
                   params: dict) -> Dataset:
    frame = features.iloc[index].reset_index(drop=True).astype(np.float64)
    frame[LABEL_COLUMN] = labels[index].astype(np.int64)
    return Dataset(name=name, kind="table", labels=labels[index].astype(np.int64), class_names=list(class_names),
                   frame=frame, label=LABEL_COLUMN, params={**params, "rows": index.tolist()})


def _sklearn_classification(name: str, fetch: Callable, split: str, n: int | None, seed: int) -> Dataset:
    _check_split(split)
    bunch = fetch(as_frame=True)
    labels = np.asarray(bunch.target, np.int64)
    index = subsample(partition(labels, split), n, seed, f"{name}/{split}")
    return _table_dataset(name, bunch.data, labels, [str(c) for c in bunch.target_names], index,
                          {"n": n, "seed": seed, "split": split})


def load_breast_cancer(split: str = "test", n: int | None = None, seed: int = 0) -> Dataset:
    """Wisconsin breast cancer: 569 tumours, 30 features, malignant vs benign."""
    from sklearn.datasets import load_breast_cancer as fetch

    return _sklearn_classification("breast-cancer", fetch, split, n, seed)


def load_wine(split: str = "test", n: int | None = None, seed: int = 0) -> Dataset:
    """Wine recognition: 178 wines, 13 chemical features, 3 cultivars."""
    from sklearn.datasets import load_wine as fetch

    return _sklearn_classification("wine", fetch, split, n, seed)


DIABETES_CLASSES = ["below median", "above median"]


def load_diabetes(split: str = "test", n: int | None = None, seed: int = 0) -> Dataset:
    """Diabetes: 442 patients, 10 features; progression score binarised at the training median."""
    from sklearn.datasets import load_diabetes as fetch

    _check_split(split)
    bunch = fetch(as_frame=True)
    score = np.asarray(bunch.target, np.float64)
    # Stratify on score quintiles so both partitions cover the whole range of the score.
    strata = np.searchsorted(np.quantile(score, [0.2, 0.4, 0.6, 0.8]), score, side="right")
    threshold = float(np.median(score[partition(strata, "train")]))
    labels = (score > threshold).astype(np.int64)
    index = subsample(partition(strata, split), n, seed, f"diabetes/{split}")
    return _table_dataset("diabetes", bunch.data, labels, DIABETES_CLASSES, index,
                          {"n": n, "seed": seed, "split": split, "threshold": threshold,
                           "target": "disease progression > training median"})


# ---------------------------------------------------------------------------------------------
# registry

_SHAPES_PARAMS = frozenset({"image_size"} | {f.name for f in fields(shapes.ShapesConfig)})

REGISTRY: dict[str, BuiltinDataset] = {
    d.name: d
    for d in [
        BuiltinDataset("shapes", "image", "Procedural shapes (6 classes) with named generative factors and masks; "
                       "supports distribution-shift presets.", shapes.load_shapes, _SHAPES_PARAMS, shiftable=True),
        BuiltinDataset("shapes-near-ood", "image", "Near-OOD: held-out shapes (ring, crescent, arrow, hexagon) drawn "
                       "by the same mechanisms.", shapes.load_near_ood, _SHAPES_PARAMS),
        BuiltinDataset("noise", "image", "Far-OOD: uniform and smooth colour noise images (no class, label -1).",
                       shapes.load_noise, frozenset({"image_size"})),
        BuiltinDataset("textures", "image", "Far-OOD: stripe, checker and blotch textures with no object (label -1).",
                       shapes.load_textures, frozenset({"image_size"})),
        BuiltinDataset("digits", "image", "scikit-learn handwritten digits 0-9 (1797 images, 8x8 upscaled to RGB).",
                       load_digits, frozenset({"image_size"})),
        BuiltinDataset("breast-cancer", "table", "Wisconsin breast cancer: 569 tumours, 30 numeric features, "
                       "malignant vs benign.", load_breast_cancer, frozenset()),
        BuiltinDataset("wine", "table", "Wine recognition: 178 wines, 13 chemical features, 3 cultivars.",
                       load_wine, frozenset()),
        BuiltinDataset("diabetes", "table", "Diabetes: 442 patients, 10 features; progression score binarised at "
                       "the training median (below/above median).", load_diabetes, frozenset()),
    ]
}


def available() -> list[str]:
    """Names of the built-in datasets."""
    return list(REGISTRY)


def _entry(name: str) -> BuiltinDataset:
    if name not in REGISTRY:
        raise DataError(f"Unknown dataset {name!r}. Available datasets: {', '.join(REGISTRY)}.")
    return REGISTRY[name]


def describe(name: str) -> str:
    """One-line description of a built-in dataset."""
    return _entry(name).description


def kind_of(name: str) -> str:
    """``"image"`` or ``"table"``."""
    return _entry(name).kind


def accepted_params(name: str) -> list[str]:
    """Keyword parameters ``load(name, ...)`` accepts besides split, n, seed (and shift for shapes)."""
    return sorted(_entry(name).params)


def load(name: str, split: str = "test", n: int | None = None, seed: int = 0, shift: str | None = None,
         **params) -> Dataset:
    """Load a built-in dataset.

    ``shift`` names a Shapes shift preset (see :func:`core.data.shift_presets`) and is only valid
    for ``"shapes"``. Extra ``params`` go to the loader (e.g. ``image_size``, or any
    ``ShapesConfig`` field such as ``marker_corr`` for the Shapes world).
    """
    entry = _entry(name)
    if shift is not None and shift != "none" and not entry.shiftable:
        raise DataError(f"Shift presets apply to the 'shapes' dataset only; {name!r} cannot take shift={shift!r}.")
    unknown = sorted(set(params) - entry.params)
    if unknown:
        allowed = ", ".join(sorted(entry.params)) or "none"
        raise DataError(f"Dataset {name!r} does not take the parameter(s) {', '.join(unknown)}. Accepted: {allowed}.")
    if not isinstance(split, str) or not split:
        raise DataError(f"split must be a non-empty string such as 'train' or 'test', got {split!r}.")
    _check_n(n)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise DataError(f"seed must be an integer, got {seed!r}.")
    if entry.shiftable:
        return entry.loader(split=split, n=n, seed=seed, shift=shift, **params)
    return entry.loader(split=split, n=n, seed=seed, **params)
