"""Tables drawn with column formats instead of a pandas Styler.

Streamlit re-renders a ``DataFrame.style`` on every run of every session (about 40 ms a table on this
server, paid again by each of 30 students drawing the same cached result); a column format is applied
by the browser. :func:`show` takes Python format strings, as ``Styler.format`` does, and turns them into
``st.column_config.NumberColumn`` formats (sprintf), so a page keeps its formats without the cost.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import pandas as pd
import streamlit as st

_PY = re.compile(r"^(?P<pre>[^{}]*)\{:(?P<comma>,?)(?:\.(?P<digits>\d+))?(?P<kind>[fge%])\}(?P<post>[^{}]*)$")


def sprintf(fmt: str) -> str:
    """The ``NumberColumn`` format of a Python format string: ``"{:.3f}"`` → ``"%.3f"``, ``"{:.4g}"`` →
    ``"%.4g"``, ``"{:.2f}×"`` → ``"%.2f×"``, any percentage (``"{:.1%}"``) → ``"percent"`` (two decimals,
    the browser's only percentage), ``"{:,}"`` → ``"localized"``; ``"{:,.0f}"`` keeps its decimals and drops
    the separators (sprintf has none). ValueError for other forms."""
    m = _PY.match(fmt)
    if m is None:
        raise ValueError(f"Unsupported column format {fmt!r}.")
    if m["kind"] == "%":
        return "percent"
    if m["comma"] and m["digits"] is None:
        return "localized"
    digits = f".{m['digits']}" if m["digits"] is not None else ""
    return f"{m['pre'].replace('%', '%%')}%{digits}{m['kind']}{m['post'].replace('%', '%%')}"


def number_config(df: pd.DataFrame, formats: Mapping[str, str] | None = None, *, precision: int | None = None,
                  config: Mapping[str, object] | None = None) -> dict[str, object]:
    """``column_config`` for ``df``: each numeric column in ``formats`` (Python format strings) gets its
    format, the other float columns ``precision`` decimals (when given); ``config`` entries are kept and
    win over the generated ones."""
    out: dict[str, object] = {}
    formats = dict(formats or {})
    for c in df.columns:
        if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]):
            continue
        if c in formats:
            out[str(c)] = st.column_config.NumberColumn(format=sprintf(formats[c]))
        elif precision is not None and pd.api.types.is_float_dtype(df[c]):
            out[str(c)] = st.column_config.NumberColumn(format=f"%.{int(precision)}f")
    out.update(dict(config or {}))
    return out


def show(df: pd.DataFrame, formats: Mapping[str, str] | None = None, *, precision: int | None = None,
         config: Mapping[str, object] | None = None, target=None, hide_index: bool = True, width: str = "stretch",
         **kwargs) -> None:
    """``st.dataframe(df)`` with the formats of :func:`number_config` (``target``: a container or column,
    default the page)."""
    (target or st).dataframe(df, column_config=number_config(df, formats, precision=precision, config=config),
                             hide_index=hide_index, width=width, **kwargs)


__all__ = ["number_config", "show", "sprintf"]
