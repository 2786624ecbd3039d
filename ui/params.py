"""Streamlit controls built from a method's spec (core.spec), for every analysis page."""
from __future__ import annotations

from typing import Any

import streamlit as st

from core.spec import MethodSpec, ParamSpec

MISSING = object()  # "no value given": the spec's default


def _list_text(value) -> str:
    return "" if value is None else ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)


def _parse_list(text: str, p: ParamSpec) -> tuple | None | str:
    """The numbers typed in a list control, or an error sentence."""
    text = text.strip()
    if not text:
        return None if p.optional else f"{p.title}: type at least one number."
    out = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = float(part)
        except ValueError:
            return f"{p.title}: '{part}' is not a number."
        if p.type == "int_list":
            if v != int(v):
                return f"{p.title}: '{part}' is not a whole number."
            v = int(v)
        if (p.low is not None and v < p.low) or (p.high is not None and v > p.high):
            return f"{p.title}: {part} is outside [{p.low:g}, {p.high:g}]."
        out.append(v)
    return tuple(out)


def param_control(p: ParamSpec, key: str, high: float | None = None, value: Any = MISSING) -> Any:
    """One control for parameter ``p``; ``high`` lowers its upper bound (a bound the data sets); ``value``
    is its initial value (default: the spec's default)."""
    start = p.default if value is MISSING else value
    label = p.name + (" (blank = automatic)" if p.optional and p.type in ("int", "float", "int_list", "float_list")
                      else "")
    if p.type == "bool" and (p.optional or p.default is None):
        # three states: "auto" (None) lets the method decide from the data, as the API default does
        options = [None, True, False]
        return st.selectbox(p.name, options, index=options.index(start), key=key, help=p.help,
                            format_func=lambda v: {None: "auto", True: "on", False: "off"}[v])
    if p.type == "bool":
        return st.checkbox(p.name, value=bool(start), key=key, help=p.help)
    if p.type == "choice":
        return st.selectbox(p.name, list(p.choices), index=list(p.choices).index(start), key=key, help=p.help)
    if p.type == "int":
        top = None if p.high is None else int(p.high)
        if high is not None:
            top = int(high) if top is None else min(top, int(high))
        default = None if start is None else int(start) if top is None else min(int(start), top)
        v = st.number_input(label, min_value=int(p.low) if p.low is not None else None, max_value=top,
                            value=default, step=1, key=key, help=p.help)
        return None if v is None else int(v)
    if p.type == "float":
        top = p.high if high is None else (high if p.high is None else min(p.high, high))
        v = st.number_input(label, min_value=float(p.low) if p.low is not None else None,
                            max_value=float(top) if top is not None else None,
                            value=None if start is None else float(start), key=key, help=p.help,
                            format="%.6g")
        return None if v is None else float(v)
    text = st.text_input(label, _list_text(start), key=key,
                         help=f"{p.help} Comma-separated numbers.")
    parsed = _parse_list(text, p)
    if isinstance(parsed, str):
        st.caption(f":red[{parsed}] The default is used.")
        return p.default
    return parsed


def param_controls(spec: MethodSpec, key_prefix: str, bounds: dict[str, float] | None = None,
                   values: dict[str, Any] | None = None) -> dict[str, Any]:
    """Controls for every parameter of ``spec`` (keys ``{key_prefix}{name}``); returns name -> value.
    ``bounds`` lowers upper bounds that the data limits (``spec.bounds(facts)``); ``values`` are initial
    values (kept from an earlier run in which the controls were drawn)."""
    bounds, values = bounds or {}, values or {}
    return {p.name: param_control(p, f"{key_prefix}{p.name}", bounds.get(p.name), values.get(p.name, MISSING))
            for p in spec.params}
