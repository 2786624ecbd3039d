"""The dataset type shared by every loader."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.errors import UserError


class DataError(UserError):
    """Raised when data cannot be loaded or validated; the message is meant for the user."""


@dataclass
class Dataset:
    """A labelled dataset: images (uint8 [N,H,W,3]), a table, or precomputed model outputs.

    ``labels`` is always an int64 array; ``-1`` marks a sample that belongs to no
    in-distribution class (noise, textures, held-out shapes seen from the ID model).
    """

    name: str
    kind: str  # "image", "table" or "outputs"
    labels: np.ndarray
    class_names: list[str]
    images: np.ndarray | None = None
    factors: pd.DataFrame | None = None
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    changed_mechanisms: list[str] = field(default_factory=list)
    frame: pd.DataFrame | None = None
    label: str | None = None
    outputs: Any = None  # ModelOutputs for an uploaded .npz
    params: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(len(self.labels))

    @property
    def feature_names(self) -> list[str]:
        if self.frame is None:
            return []
        return [c for c in self.frame.columns if c != self.label]

    def table_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Features as float64 [N, F] and labels, for a table dataset."""
        if self.frame is None:
            raise DataError(f"Dataset '{self.name}' is not a table.")
        x = self.frame[self.feature_names].to_numpy(dtype=np.float64)
        return x, self.labels

    def subset(self, index: np.ndarray) -> Dataset:
        """A new dataset with the rows in ``index`` (same class names)."""
        index = np.asarray(index)
        return Dataset(
            name=self.name,
            kind=self.kind,
            labels=self.labels[index],
            class_names=list(self.class_names),
            images=None if self.images is None else self.images[index],
            factors=None if self.factors is None else self.factors.iloc[index].reset_index(drop=True),
            masks={k: v[index] for k, v in self.masks.items()},
            changed_mechanisms=list(self.changed_mechanisms),
            frame=None if self.frame is None else self.frame.iloc[index].reset_index(drop=True),
            label=self.label,
            outputs=None if self.outputs is None else self.outputs.subset(index),
            params=dict(self.params),
        )

    def fingerprint(self) -> str:
        """A short stable hash of the content, used as a cache key."""
        import hashlib

        h = hashlib.sha1()
        h.update(self.name.encode())
        h.update(repr(sorted((k, repr(v)) for k, v in self.params.items())).encode())
        h.update(np.ascontiguousarray(self.labels).tobytes())
        if self.images is not None:
            h.update(np.ascontiguousarray(self.images[:: max(1, len(self) // 64)]).tobytes())
            h.update(str(self.images.shape).encode())
        if self.frame is not None:
            h.update(pd.util.hash_pandas_object(self.frame, index=False).to_numpy().tobytes())
        if self.outputs is not None:
            h.update(np.ascontiguousarray(self.outputs.logits).tobytes())
        return h.hexdigest()[:16]
