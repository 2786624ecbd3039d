"""Datasets: the registry of built-in datasets and loaders for uploads.

>>> from core import data
>>> data.available()[:3]
['shapes', 'shapes-near-ood', 'noise']
>>> ds = data.load("shapes", split="test", n=8, seed=0, shift="size", image_size=32)
>>> ds.images.shape, ds.changed_mechanisms
((8, 32, 32, 3), ['size'])
"""
from __future__ import annotations

from .builtin import accepted_params, available, describe, kind_of, load
from .dataset import DataError, Dataset
from .shapes import describe_shift, shift_presets
from .uploads import load_image_zip, load_outputs_npz, load_table, load_upload, table_label_candidates

__all__ = [
    "DataError",
    "Dataset",
    "accepted_params",
    "available",
    "describe",
    "describe_shift",
    "kind_of",
    "load",
    "load_image_zip",
    "load_outputs_npz",
    "load_table",
    "load_upload",
    "shift_presets",
    "table_label_candidates",
]
