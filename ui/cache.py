"""Bounded caches shared across sessions.

Streamlit's ``st.cache_data`` replays elements drawn inside a cached call, which makes a
progress bar awkward; these caches are plain LRU dicts held in ``st.cache_resource`` so a
progress bar appears only when work is actually done. Every cache has a fixed size.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import streamlit as st


class BoundedCache:
    """A thread-safe LRU mapping with at most ``max_entries`` items."""

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, default=None):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return default

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def put(self, key: str, value: Any) -> Any:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return value

    def get_or_compute(self, key: str, compute: Callable[[], Any]) -> Any:
        sentinel = object()
        value = self.get(key, sentinel)
        if value is sentinel:
            value = self.put(key, compute())
        return value

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


@st.cache_resource(show_spinner=False)
def models_cache() -> BoundedCache:
    return BoundedCache(max_entries=4)


@st.cache_resource(show_spinner=False)
def datasets_cache() -> BoundedCache:
    return BoundedCache(max_entries=12)


@st.cache_resource(show_spinner=False)
def outputs_cache() -> BoundedCache:
    return BoundedCache(max_entries=24)


@st.cache_resource(show_spinner=False)
def results_cache() -> BoundedCache:
    """Analysis results (detector scores, pruning sweeps, …) keyed by their inputs' fingerprints."""
    return BoundedCache(max_entries=64)
