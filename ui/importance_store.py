"""Importance distributions kept by the user during a session (bounded), for the Importance page."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pandas as pd
import streamlit as st

from core.importance import Importance, compare

MAX_KEPT = 48
#: a session's kept distributions together hold at most this many bytes (attribution maps are large)
MAX_KEPT_BYTES = 256 * 2**20
KEY = "importances"


def kept() -> OrderedDict[str, Importance]:
    return st.session_state.setdefault(KEY, OrderedDict())


def _same(a: Importance, b: Importance) -> bool:
    try:
        same_provenance = bool(a.provenance == b.provenance)
    except ValueError:  # arrays inside the provenance: treat as different
        return False
    return (same_provenance and a.unit == b.unit and np.shape(a.values) == np.shape(b.values)
            and np.array_equal(a.values, b.values, equal_nan=True))


def keep(imp: Importance, label: str | None = None, with_status: bool = False):
    """Store an importance distribution under a unique label; the oldest go past MAX_KEPT entries or
    MAX_KEPT_BYTES in all (the values are shared, never copied).

    Keeping the same distribution again (same values, unit and provenance under the same label)
    adds no copy. Returns its name, or ``(name, added)`` with ``with_status``."""
    store = kept()
    base = label or imp.label or "importance"
    name, i = base, 2
    while name in store:
        if _same(store[name], imp):
            return (name, False) if with_status else name
        name, i = f"{base} ({i})", i + 1
    store[name] = imp
    while len(store) > 1 and (len(store) > MAX_KEPT or sum(v.nbytes for v in store.values()) > MAX_KEPT_BYTES):
        store.popitem(last=False)
    return (name, True) if with_status else name


def transform(values: np.ndarray, how: str) -> np.ndarray:
    """Put distributions of different methods on one scale: raw, z-score or rank percentile."""
    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v)]
    if how == "z-score":
        s = v.std()
        return (v - v.mean()) / (s if s > 0 else 1.0)
    if how == "rank percentile":
        return (np.argsort(np.argsort(v, kind="stable"), kind="stable") + 0.5) / max(len(v), 1)
    return v


def summary_table(items: dict[str, Importance]) -> pd.DataFrame:
    rows = []
    for name, imp in items.items():
        rows.append({"distribution": name, "unit": imp.unit, **imp.summary()})
    return pd.DataFrame(rows)


def pairwise_table(items: dict[str, Importance]) -> pd.DataFrame:
    names = list(items)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            rows.append({"a": a, "b": b, **compare(items[a], items[b])})
    return pd.DataFrame(rows)


def export_csv(items: dict[str, Importance]) -> bytes:
    frames = []
    for name, imp in items.items():
        df = imp.to_frame()
        df.insert(0, "distribution", name)
        frames.append(df)
    return pd.concat(frames, ignore_index=True).to_csv(index=False).encode() if frames else b""
