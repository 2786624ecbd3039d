"""Figures of distribution-shift attribution: pure functions, data in, ``go.Figure`` out.

- :func:`attribution_waterfall`: from the source performance, one step per mechanism (its Shapley
  value, with its bootstrap interval as an error bar at the end of its step), to the target
  performance; the steps add up to the total change.
- :func:`weight_histogram`: the distribution of importance weights on a log scale (binned in
  NumPy), with the effective sample size and the clip marked.
- :func:`drift_effects`: per-column effect sizes of the drift table against their thresholds.
- :func:`drift_table_view`: the drift table trimmed and renamed for display.
- :func:`reliability_curves`: calibration of the domain classifiers.
- :func:`explanation_waterfall`: the waterfall of a :class:`core.shift.ShiftExplanation`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.viz import _layout, colour

UP, DOWN, TOTAL = "#2ca02c", "#d62728", "#7f7f7f"


def attribution_waterfall(names: Sequence[str], values: Sequence[float], *, start: float, total: float,
                          ci_low: Sequence[float] | None = None, ci_high: Sequence[float] | None = None,
                          total_ci: tuple[float, float] | None = None, metric: str = "performance",
                          higher_is_better: bool = True, title: str | None = "Why the performance changed",
                          source_label: str = "source", target_label: str = "target") -> go.Figure:
    """Waterfall from ``start`` (source performance) through each mechanism's attribution to
    ``start + total`` (target performance). Steps that improve the metric are green, steps that
    worsen it red (``higher_is_better`` says which direction is better). ``ci_low``/``ci_high``
    (per mechanism) are drawn as error bars at the end of each step; ``total_ci`` on the last bar."""
    names = [str(n) for n in names]
    values = np.asarray(values, np.float64)
    if len(names) != len(values):
        raise ValueError(f"{len(names)} names for {len(values)} values.")
    fig = go.Figure(go.Waterfall(
        x=[source_label, *names, target_label], y=[start, *values.tolist(), start + total],
        measure=["absolute", *["relative"] * len(values), "total"], base=0,
        text=[f"{start:.4g}", *[f"{v:+.3g}" for v in values], f"{start + total:.4g}"], textposition="outside",
        increasing=dict(marker=dict(color=UP if higher_is_better else DOWN)),
        decreasing=dict(marker=dict(color=DOWN if higher_is_better else UP)),
        totals=dict(marker=dict(color=TOTAL)), connector=dict(line=dict(color="#bbbbbb", width=1)),
        hovertemplate="%{x}: %{text}<extra></extra>", showlegend=False))
    ends = start + np.cumsum(values)
    if ci_low is not None and ci_high is not None:
        lo, hi = np.asarray(ci_low, np.float64), np.asarray(ci_high, np.float64)
        ok = np.isfinite(lo) & np.isfinite(hi)
        if ok.any():
            fig.add_trace(go.Scatter(
                x=[n for n, k in zip(names, ok) if k], y=ends[ok], mode="markers",
                marker=dict(size=1, color="rgba(0,0,0,0)"), showlegend=False, name="interval",
                error_y=dict(type="data", symmetric=False, array=(hi - values)[ok], arrayminus=(values - lo)[ok],
                             color="#333333", thickness=1.5, width=6),
                customdata=np.c_[lo[ok], hi[ok]],
                hovertemplate="%{x}: interval %{customdata[0]:+.3g} to %{customdata[1]:+.3g}<extra></extra>"))
    if total_ci is not None and np.all(np.isfinite(total_ci)):
        fig.add_trace(go.Scatter(
            x=[target_label], y=[start + total], mode="markers", marker=dict(size=1, color="rgba(0,0,0,0)"),
            showlegend=False, error_y=dict(type="data", symmetric=False, array=[total_ci[1] - total],
                                            arrayminus=[total - total_ci[0]], color="#333333", thickness=1.5, width=6),
            hovertemplate=f"total change {total:+.3g} (interval {total_ci[0]:+.3g} to {total_ci[1]:+.3g})<extra></extra>"))
    better = "higher is better" if higher_is_better else "lower is better"
    return _layout(fig, title, height=420, yaxis_title=f"{metric} ({better})", xaxis_title="mechanism")


def explanation_waterfall(result, title: str | None = "Why the performance changed") -> go.Figure:
    """:func:`attribution_waterfall` of a :class:`core.shift.ShiftExplanation` (mechanism names as labels)."""
    nodes = [m.node for m in result.mechanisms]
    return attribution_waterfall(
        [m.name for m in result.mechanisms], [result.attributions[n] for n in nodes],
        start=result.source_performance, total=result.total, ci_low=[result.ci[n][0] for n in nodes],
        ci_high=[result.ci[n][1] for n in nodes], total_ci=result.total_ci, metric=result.metric_name,
        higher_is_better=result.higher_is_better, title=title)


def weight_histogram(weights: np.ndarray, *, ess: float | None = None, clip: float | None = None, bins: int = 60,
                     title: str | None = "Importance weights", label: str = "source rows") -> go.Figure:
    """Histogram of log₁₀ of the positive ``weights`` (binned in NumPy), the mean-1 line, the ``clip``
    and the effective sample size ESS = (Σw)²/Σw² in the title's subtitle."""
    w = np.asarray(weights, np.float64).ravel()
    w = w[np.isfinite(w)]
    n = len(w)
    if ess is None and n:
        ess = float(w.sum() ** 2 / max((w * w).sum(), 1e-300))
    pos = w[w > 0]
    logw = np.log10(pos) if len(pos) else np.zeros(1)
    lo, hi = float(logw.min()), float(logw.max())
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(logw, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(go.Bar(x=10 ** centres, y=counts, width=np.diff(10 ** edges), marker_color=colour(0),
                           name=label, hovertemplate="weight ≈ %{x:.3g}: %{y} rows<extra></extra>"))
    fig.add_vline(x=1.0, line=dict(color="#555555", dash="dot"), annotation_text="w = 1", annotation_position="top")
    if clip is not None and np.isfinite(clip) and clip <= 10 ** (hi + 0.5):
        fig.add_vline(x=float(clip), line=dict(color=DOWN, dash="dash"), annotation_text="clip",
                      annotation_position="top right")
    sub = f"ESS {ess:,.0f} of {n:,} rows ({ess / n:.1%})" if n and ess is not None else ""
    if n - len(pos):
        sub += f"; {n - len(pos)} rows of weight 0 not shown"
    fig.update_xaxes(type="log")
    full = f"{title}<br><sup>{sub}</sup>" if title else None
    return _layout(fig, full, xaxis_title="weight (log scale)", yaxis_title="rows", bargap=0)


def drift_effects(table: pd.DataFrame, top: int = 20, title: str | None = "Drift per column") -> go.Figure:
    """Horizontal bars of each column's effect size (normed Wasserstein or Jensen–Shannon distance) with
    its drift threshold; drifting columns in red. ``table`` is :func:`core.shift.drift_table`'s output."""
    t = table.sort_values("effect", ascending=False, kind="stable").head(top).iloc[::-1]
    colours = [DOWN if d else colour(0) for d in t["drifted"]]
    text = [f"{r.test}: " + (f"p = {r.p_value:.2g}" if np.isfinite(r.p_value) else f"{r.statistic:.3g}")
            for r in t.itertuples()]
    fig = go.Figure(go.Bar(x=t["effect"], y=t["column"], orientation="h", marker_color=colours, text=text,
                           textposition="auto", customdata=np.c_[t["effect_name"], t["kind"]],
                           hovertemplate="%{y} (%{customdata[1]}): %{customdata[0]} %{x:.3g}<extra></extra>"))
    thresholds = sorted({0.1} | set(t.loc[t["test"].isin(["Wasserstein (normed)", "Jensen-Shannon"]), "threshold"]))
    for th in thresholds:
        fig.add_vline(x=float(th), line=dict(color="#555555", dash="dot"))
    return _layout(fig, title, height=max(260, 28 * len(t) + 120), xaxis_title="effect size (distance)",
                   yaxis_title="")


DRIFT_VIEW = {"column": "column", "kind": "kind", "test": "test", "statistic": "statistic", "p_value": "p-value",
              "effect": "effect size", "drifted": "drift", "source_summary": "source", "target_summary": "target"}


def drift_table_view(table: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """The drift table with the columns a page shows, readable headers and rounded numbers."""
    view = table[list(DRIFT_VIEW)].rename(columns=DRIFT_VIEW).copy()
    for c in ("statistic", "p-value", "effect size"):
        view[c] = view[c].astype(float).round(digits)
    return view


def reliability_curves(curves: Mapping[str, np.ndarray], title: str | None = "Domain classifier calibration") -> go.Figure:
    """Observed target share against mean predicted P(target) per bin, one line per classifier
    (``curves[label]`` = [bins, 3]: mean predicted, observed rate, rows), with the diagonal."""
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="#999999", dash="dot"),
                               name="calibrated", hoverinfo="skip"))
    for i, (name, tab) in enumerate(curves.items()):
        tab = np.asarray(tab, np.float64)
        fig.add_trace(go.Scatter(x=tab[:, 0], y=tab[:, 1], mode="lines+markers", name=str(name),
                                 line=dict(color=colour(i)), customdata=tab[:, 2],
                                 hovertemplate="predicted %{x:.3f}, observed %{y:.3f} (%{customdata:.0f} rows)"
                                               "<extra>" + str(name) + "</extra>"))
    fig = _layout(fig, title, height=440, xaxis_title="mean predicted P(target)",
                  yaxis_title="observed share of target rows", xaxis_range=[0, 1], yaxis_range=[0, 1])
    # one line per classifier: a vertical legend beside the square plot instead of rows of it under the axis
    fig.update_layout(legend=dict(orientation="v", yanchor="top", y=1, xanchor="left", x=1.02),
                      margin=dict(b=50, r=20))
    return fig


__all__ = ["DRIFT_VIEW", "attribution_waterfall", "drift_effects", "drift_table_view", "explanation_waterfall",
           "reliability_curves", "weight_histogram"]
