"""Plotly figure builders: pure functions, data in, ``go.Figure`` out. Shared by every page.

Large inputs are binned in numpy before plotting, so a figure stays small whatever N is.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative

PALETTE = qualitative.Plotly + qualitative.D3
TEMPLATE = "plotly_white"


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


@functools.cache
def _template_json() -> dict:
    """The template's JSON, validated once (plotly validates and deep-copies a template on every assignment:
    about 30 ms a figure, most of a page's rerun when it draws ten figures)."""
    return pio.templates[TEMPLATE].to_plotly_json()


def _layout(fig: go.Figure, title: str | None, height: int = 380, **kw) -> go.Figure:
    # legend under the plot: several long set names never collide with the title
    fig.update_layout(title=title, height=height, margin=dict(l=50, r=20, t=50 if title else 20, b=90),
                      legend=dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0), **kw)
    # the already validated template goes straight into the layout's dict: the same JSON, 6 ms instead of 33
    fig._layout["template"] = _template_json()
    return fig


def class_balance(labels: np.ndarray, class_names: Sequence[str], title: str | None = "Class balance",
                  preds: np.ndarray | None = None) -> go.Figure:
    """Bar chart of how many samples carry each label (and, optionally, each prediction)."""
    k = len(class_names)
    labels = np.asarray(labels)
    counts = np.bincount(labels[(labels >= 0) & (labels < k)], minlength=k)
    fig = go.Figure(go.Bar(x=list(class_names), y=counts, name="labels", marker_color=colour(0)))
    if preds is not None:
        pc = np.bincount(np.asarray(preds)[(preds >= 0) & (preds < k)], minlength=k)
        fig.add_bar(x=list(class_names), y=pc, name="predictions", marker_color=colour(1))
    unlabelled = int(((labels < 0) | (labels >= k)).sum())
    if unlabelled:
        fig.add_annotation(text=f"{unlabelled} samples without an in-distribution label", showarrow=False,
                           xref="paper", yref="paper", x=1, y=1.08, xanchor="right")
    return _layout(fig, title, xaxis_title="class", yaxis_title="samples", barmode="group")


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, class_names: Sequence[str], normalize: bool = True,
                     title: str | None = "Confusion matrix", pred_names: Sequence[str] | None = None) -> go.Figure:
    """Heatmap of counts (or row-normalised rates), true class on y, predicted class on x."""
    pred_names = list(pred_names if pred_names is not None else class_names)
    k, m = len(class_names), len(pred_names)
    labels, preds = np.asarray(labels), np.asarray(preds)
    ok = (labels >= 0) & (labels < k) & (preds >= 0) & (preds < m)
    cm = np.zeros((k, m), np.int64)
    np.add.at(cm, (labels[ok], preds[ok]), 1)
    z = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
    text = [[f"{cm[i, j]}" + (f"<br>{z[i, j]:.0%}" if normalize else "") for j in range(m)] for i in range(k)]
    fig = go.Figure(go.Heatmap(z=z, x=pred_names, y=list(class_names), colorscale="Blues", text=text,
                               texttemplate="%{text}", hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>",
                               zmin=0, zmax=1 if normalize else None, colorbar=dict(title="rate" if normalize else "count")))
    fig.update_yaxes(autorange="reversed", title="true class")
    fig.update_xaxes(title="predicted class")
    return _layout(fig, title, height=max(320, 40 * k + 120))


def _bin_edges(arrays: Sequence[np.ndarray], bins: int) -> np.ndarray:
    allv = np.concatenate([a[np.isfinite(a)] for a in arrays if len(a)]) if arrays else np.zeros(0)
    if allv.size == 0:
        return np.linspace(0, 1, bins + 1)
    lo, hi = np.quantile(allv, [0.001, 0.999])
    if not hi > lo:
        lo, hi = allv.min() - 0.5, allv.max() + 0.5
    return np.linspace(lo, hi, bins + 1)


def score_distributions(groups: Mapping[str, np.ndarray], kind: str = "histogram", bins: int = 60,
                        title: str | None = None, xaxis: str = "score", threshold: float | None = None) -> go.Figure:
    """Overlaid distributions of several groups of scores, binned in numpy.

    ``kind="histogram"`` draws densities on shared bins (outliers beyond the 0.1/99.9%
    quantiles are clipped into the end bins); ``kind="ecdf"`` draws empirical CDFs
    evaluated on a 400-point grid. ``threshold`` adds a vertical line.
    """
    arrays = [np.asarray(v, np.float64) for v in groups.values()]
    fig = go.Figure()
    if kind == "ecdf":  # the full range, so every curve reaches 0 and 1
        finite = [a[np.isfinite(a)] for a in arrays if np.isfinite(a).any()]
        lo = min(a.min() for a in finite) if finite else 0.0
        hi = max(a.max() for a in finite) if finite else 1.0
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, 400)
        for i, (name, v) in enumerate(groups.items()):
            v = np.sort(np.asarray(v, np.float64)[np.isfinite(v)])
            y = np.searchsorted(v, edges, side="right") / max(len(v), 1)
            fig.add_scatter(x=edges, y=y, mode="lines", name=f"{name} (n={len(v)})", line=dict(color=colour(i)))
        yaxis = "fraction ≤ score"
    else:
        edges = _bin_edges(arrays, bins)
        centres = 0.5 * (edges[1:] + edges[:-1])
        width = edges[1] - edges[0]
        for i, (name, v) in enumerate(groups.items()):
            v = np.asarray(v, np.float64)
            v = np.clip(v[np.isfinite(v)], edges[0], edges[-1])
            h, _ = np.histogram(v, bins=edges)
            dens = h / max(len(v), 1) / width
            fig.add_bar(x=centres, y=dens, name=f"{name} (n={len(v)})", marker_color=colour(i), opacity=0.55, width=width)
        yaxis = "density"
    if threshold is not None and np.isfinite(threshold):
        fig.add_vline(x=float(threshold), line=dict(color="black", dash="dash"), annotation_text="threshold")
    return _layout(fig, title, barmode="overlay", xaxis_title=xaxis, yaxis_title=yaxis, bargap=0)


def roc_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str | None = "ROC",
               max_points: int = 600, xaxis: str = "false positive rate", yaxis: str = "true positive rate",
               highlight: str | None = None) -> go.Figure:
    """ROC curves (fpr, tpr) per name, thinned to at most ``max_points`` points each. More than ten
    curves get 24 distinct colours (then dashed repeats); ``highlight`` draws one curve thick on top."""
    many = len(curves) > 10
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="lightgrey", dash="dot"), showlegend=False,
                    hoverinfo="skip")
    for i, (name, (fpr, tpr)) in enumerate(curves.items()):
        fpr, tpr = np.asarray(fpr), np.asarray(tpr)
        if len(fpr) > max_points:
            keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
            fpr, tpr = fpr[keep], tpr[keep]
        line = dict(color=qualitative.Dark24[i % 24] if many else colour(i), dash="dash" if many and i >= 24 else None)
        if highlight is not None:
            line["width"] = 4 if name == highlight else 1.5
        fig.add_scatter(x=fpr, y=tpr, mode="lines", name=name, line=line, legendrank=1000 + i,
                        opacity=1.0 if highlight in (None, name) else 0.6)
    if highlight is not None:  # drawn last, so it is on top (the legend keeps the given order)
        fig.data = tuple(t for t in fig.data if t.name != highlight) + tuple(t for t in fig.data if t.name == highlight)
    fig.update_xaxes(range=[0, 1], title=xaxis)
    fig.update_yaxes(range=[0, 1.01], title=yaxis)
    return _layout(fig, title, height=420)


def grouped_bars(table: Mapping[str, Mapping[str, float]], title: str | None = None, yaxis: str = "",
                 yrange: tuple[float, float] | None = None) -> go.Figure:
    """Bars for ``table[group][category] = value`` (e.g. AUROC per detector per OOD set)."""
    fig = go.Figure()
    for i, (group, row) in enumerate(table.items()):
        fig.add_bar(x=list(row.keys()), y=list(row.values()), name=str(group), marker_color=colour(i))
    if yrange:
        fig.update_yaxes(range=list(yrange))
    return _layout(fig, title, barmode="group", yaxis_title=yaxis)


def heatmap_table(z: np.ndarray, rows: Sequence[str], cols: Sequence[str], title: str | None = None,
                  colorscale: str = "RdYlGn", zmin: float | None = None, zmax: float | None = None, fmt: str = ".3f",
                  colorbar_title: str = "") -> go.Figure:
    """A matrix of numbers shown as an annotated heatmap (e.g. detector × OOD set AUROC)."""
    z = np.asarray(z, float)
    text = [[("" if not np.isfinite(v) else format(v, fmt)) for v in row] for row in z]
    fig = go.Figure(go.Heatmap(z=z, x=list(cols), y=list(rows), colorscale=colorscale, zmin=zmin, zmax=zmax, text=text,
                               texttemplate="%{text}", colorbar=dict(title=colorbar_title)))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title, height=max(300, 26 * len(rows) + 140))


def lorenz_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str | None = "Lorenz curves") -> go.Figure:
    """Lorenz curves (share of units, share of |importance| they carry; units sorted ascending), one per
    name, with the diagonal of perfect equality. The further below the diagonal, the more concentrated."""
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="lightgrey", dash="dot"), name="equality",
                    hoverinfo="skip")
    for i, (name, (x, y)) in enumerate(curves.items()):
        fig.add_scatter(x=np.asarray(x), y=np.asarray(y), mode="lines", name=name, line=dict(color=colour(i)))
    fig.update_xaxes(range=[0, 1], title="share of units (least important first)")
    fig.update_yaxes(range=[0, 1.01], title="share of |importance|")
    return _layout(fig, title, height=420)


def paired_scatter(x: np.ndarray, y: np.ndarray, xname: str, yname: str, title: str | None = None,
                   max_points: int = 5000, seed: int = 0) -> go.Figure:
    """One importance distribution against another over the same units (a seeded subsample of at most
    ``max_points`` points), with the identity line."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))
        x, y = x[keep], y[keep]
    fig = go.Figure(go.Scattergl(x=x, y=y, mode="markers", marker=dict(size=4, opacity=0.5, color=colour(0)),
                                 name="units", showlegend=False))
    if len(x):
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        fig.add_scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(color="lightgrey", dash="dot"),
                        name="y = x", hoverinfo="skip")
    return _layout(fig, title, height=420, xaxis_title=xname, yaxis_title=yname)
