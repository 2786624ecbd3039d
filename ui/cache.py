"""The caches every session shares, bounded in bytes (core.cache.ByteCache).

Streamlit's ``st.cache_data`` replays elements drawn inside a cached call and copies its values
per session; these caches are held once in ``st.cache_resource``, hand every session the same
read-only objects, compute identical work in flight once (later sessions wait and watch its
progress) and queue distinct work behind a gate sized to the cores.

Budgets (MB) come from ``IE_CACHE_MB`` (the total, default 4096) split in fixed shares; the app's
settings (sidebar) show each cache's use.
"""
from __future__ import annotations

import os

import plotly.graph_objects as go
import streamlit as st

from core.cache import GATE, ByteCache

#: each cache's share of the total budget
SHARES = {"models": 0.15, "datasets": 0.20, "outputs": 0.20, "results": 0.45}
DEFAULT_TOTAL_MB = 4096


def total_budget_mb() -> int:
    env = os.environ.get("IE_CACHE_MB", "")
    return int(env) if env.isdigit() and int(env) > 0 else DEFAULT_TOTAL_MB


def _budget(name: str) -> int:
    return int(total_budget_mb() * SHARES[name] * 2**20)


@st.cache_resource(show_spinner=False)
def models_cache() -> ByteCache:
    return ByteCache(_budget("models"), name="models", max_entries=6)


@st.cache_resource(show_spinner=False)
def datasets_cache() -> ByteCache:
    return ByteCache(_budget("datasets"), name="datasets")


@st.cache_resource(show_spinner=False)
def outputs_cache() -> ByteCache:
    return ByteCache(_budget("outputs"), name="outputs")


@st.cache_resource(show_spinner=False)
def results_cache() -> ByteCache:
    """Analysis results (detector scores, pruning sweeps, attributions, …) keyed by their inputs' fingerprints."""
    return ByteCache(_budget("results"), name="results")


#: what one cached figure is charged (plotly figures hold small binned arrays; the entry cap bounds them)
FIGURE_BYTES = 200_000


@st.cache_resource(show_spinner=False)
def figures_cache() -> ByteCache:
    """Figures and tables drawn from cached results, built once per (result, view) and shared by every session:
    a rerun that only redraws costs no figure building."""
    return ByteCache(512 * FIGURE_BYTES, name="figures", max_entries=512)


class SharedFigure(go.Figure):
    """A plotly figure that every session draws and none changes. Streamlit asks for its plain dict on
    every draw (a deep copy and a base64 pass over the arrays: about 15 ms for a score histogram, paid by
    each of 30 students); this one makes the dict once and hands out the same one."""

    def to_dict(self):
        d = self.__dict__.get("_shared_dict")
        if d is None:
            d = super().to_dict()
            self.__dict__["_shared_dict"] = d
        return d


def _shared(value):
    if type(value) is go.Figure:
        value.__class__ = SharedFigure  # same layout and data; read-only from here on
    return value


def shared_figure(result_key, name: str, build, *params):
    """The figure ``build()`` for ``(result_key, name, params)``, built once for every session (a plotly
    figure comes back as a read-only :class:`SharedFigure`)."""
    return figures_cache().get_or_compute(("fig", result_key, name, params), lambda: _shared(build()),
                                          nbytes=FIGURE_BYTES)


def all_caches() -> list[ByteCache]:
    return [models_cache(), datasets_cache(), outputs_cache(), results_cache(), figures_cache()]


def usage_rows() -> list[dict]:
    """One row per cache for the settings panel: entries, MB used, MB budget, hits, shared waits."""
    rows = []
    for c in all_caches():
        s = c.stats()
        rows.append({"cache": s["name"], "entries": s["entries"], "used MB": round(s["bytes"] / 2**20, 1),
                     "budget MB": round(s["max_bytes"] / 2**20), "hits": s["hits"], "computed": s["computed"],
                     "shared": s["shared"]})
    return rows


def gate_status() -> str:
    return f"{GATE.slots} concurrent computation(s); {GATE.busy} running, {GATE.waiting} queued"


def shared_run(analysis: str, request, evaluate, label: str):
    """``evaluate(resolver, request, progress=, cache=)`` behind a progress bar, shared through the results
    cache under the request's fingerprint: sessions that press Run with the same settings at the same time
    wait for one computation (watching its progress) and get the same, read-only result; the workflow
    caches its own parts (fitted detectors, configurations, density ratios) in the same cache."""
    from . import workspace as wsp

    cache = results_cache()
    key = (f"{analysis}-run", request.fingerprint)
    result = cache.get(key)
    if result is None:
        with wsp.progress_bar(label) as progress:
            result = cache.get_or_compute(
                key, lambda report: evaluate(wsp.resolver(), request, progress=report, cache=cache), progress=progress)
    return result
