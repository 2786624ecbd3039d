"""The shelf of importance distributions a user keeps from any analysis, for the Importance page.

A shelf lives on the server, in a bounded store shared by the process, under a random id that the
page puts in its URL (``?shelf=…``): a browser reload, or the same link in another tab, finds the
same shelf again while the server runs. Shelves are bounded (entries and bytes per shelf, shelves
per server); the values are shared with the analyses' cached results, never copied.
"""
from __future__ import annotations

import secrets
from collections import OrderedDict

import numpy as np
import pandas as pd
import streamlit as st

from core.cache import ByteCache
from core.importance import Importance, compare, load, save

MAX_KEPT = 48
#: a shelf's kept distributions together hold at most this many bytes (attribution maps are large)
MAX_KEPT_BYTES = 256 * 2**20
MAX_SHELVES = 200
KEY = "importances"
SHELF_PARAM = "shelf"


@st.cache_resource(show_spinner=False)
def shelves() -> ByteCache:
    """Every session's shelf by id, least recently used dropped first (bounded in bytes and count)."""
    return ByteCache(4 * MAX_KEPT_BYTES, name="shelves", max_entries=MAX_SHELVES)


def _shelf_id() -> str:
    sid = st.session_state.get("_shelf_id")
    if sid is None:
        try:
            sid = st.query_params.get(SHELF_PARAM)
        except Exception:  # noqa: BLE001  (no browser: AppTest of a single page)
            sid = None
        if not (isinstance(sid, str) and sid.isalnum() and 8 <= len(sid) <= 32):
            sid = secrets.token_hex(8)
        st.session_state["_shelf_id"] = sid
    return sid


def kept() -> OrderedDict[str, Importance]:
    """This user's shelf: found again on the server after a reload (the id is in the URL)."""
    sid = _shelf_id()
    store = shelves()
    if KEY not in st.session_state:
        st.session_state[KEY] = store.get(sid) or OrderedDict()
    shelf = st.session_state[KEY]
    if store.get(sid) is not shelf:
        store.put(sid, shelf)
    try:
        if st.query_params.get(SHELF_PARAM) != sid:
            st.query_params[SHELF_PARAM] = sid
    except Exception:  # noqa: BLE001
        pass
    return shelf


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
    shelves().recharge(_shelf_id())
    return (name, True) if with_status else name


def rename(old: str, new: str) -> str:
    """Rename a kept distribution, keeping its place; returns the name it got (made unique)."""
    store = kept()
    new = new.strip() or old
    if new == old or old not in store:
        return old
    base, name, i = new, new, 2
    while name in store:
        name, i = f"{base} ({i})", i + 1
    items = list(store.items())
    store.clear()
    for k, v in items:
        store[name if k == old else k] = v
    return name


def remove(names: list[str]) -> None:
    store = kept()
    for n in names:
        store.pop(n, None)
    shelves().recharge(_shelf_id())


def add_loaded(content: bytes, filename: str) -> list[str]:
    """Load a saved-results file onto the shelf; raises ImportanceError (the shelf unchanged) if it is malformed."""
    loaded = load(content, filename)  # everything is validated before the shelf is touched
    return [keep(imp, label=name) for name, imp in loaded.items()]


def save_bytes(items: dict[str, Importance]) -> bytes:
    return save(items)


def keep_control(importances, key: str, what: str, help: str | None = None) -> None:
    """The same "Keep" button on every analysis page: keeps ``importances`` (label -> Importance, or a
    function returning them, called only when the button is pressed) on the shelf and links to the
    Importance page."""
    from . import workspace as wsp

    if st.button(f"Keep {what}", key=key, icon=":material/bookmark_add:",
                 help=help or f"Keeps {what} as importance distributions for the Importance page."):
        if callable(importances):
            importances = importances()
        added = sum(keep(imp, label=label, with_status=True)[1] for label, imp in importances.items())
        already = len(importances) - added
        st.success(f"Kept {added} distribution{'s' if added != 1 else ''}"
                   + (f" ({already} were already kept)" if already else "") + "; see the Importance page.")
        wsp.page_link("pages/9_Importance_distributions.py", "Open the Importance page", ":material/bar_chart:")


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
        rows.append({"distribution": name, "unit": imp.unit, **imp.stats()})
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
