"""Figure builders for attribution results: pure functions, arrays in, ``go.Figure`` out.

Attribution maps come in the model's input shape; images are reduced to one value per pixel
here (:func:`reduce_channels`), never in the methods. Maps with NaN are not drawn: their cell says
so instead. Large maps are block-averaged to at most ``max_side`` pixels per side and images are
embedded as PNG, so a grid of many overlays stays small.
"""
from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import _layout, colour

SEQUENTIAL = "Inferno"
DIVERGING = "RdBu_r"


def reduce_channels(a: np.ndarray, how: str = "sum") -> np.ndarray:
    """Image maps [N, C, H, W] (or [C, H, W]) -> one value per pixel: "sum" (signed; what IG's
    completeness adds up), "abs-sum" (magnitude), or "max-abs" (the largest magnitude over channels)."""
    a = np.asarray(a)
    axis = 1 if a.ndim == 4 else 0
    if how == "sum":
        return a.sum(axis)
    if how == "abs-sum":
        return np.abs(a).sum(axis)
    if how == "max-abs":
        return np.abs(a).max(axis)
    raise ValueError(f"how must be 'sum', 'abs-sum' or 'max-abs', got {how!r}")


def _block_mean(m: np.ndarray, max_side: int) -> np.ndarray:
    """Average k×k blocks so neither side exceeds ``max_side`` (NaN propagates into its block)."""
    h, w = m.shape[-2:]
    k = int(np.ceil(max(h, w) / max_side))
    if k <= 1:
        return m
    hh, ww = (h // k) * k, (w // k) * k
    m = m[..., :hh, :ww]
    return m.reshape(*m.shape[:-2], hh // k, k, ww // k, k).mean(axis=(-3, -1))


def _png(image: np.ndarray, side: int) -> str:
    from PIL import Image

    img = Image.fromarray(np.asarray(image, np.uint8))
    if max(img.size) > side:
        img = img.resize((side, side * img.size[1] // img.size[0]), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def heatmap_grid(maps: Mapping[str, np.ndarray], images: np.ndarray | None = None, normalise: str = "shared",
                 sample_titles: Sequence[str] | None = None, nan_samples: Mapping[str, np.ndarray] | None = None,
                 opacity: float = 0.6, max_side: int = 64, title: str | None = None,
                 outlines: np.ndarray | None = None, outline_colour: str = "#00e5ff", saturate: float | None = None,
                 fade: bool = False) -> go.Figure:
    """Heatmap overlays: one row per sample, one column per method (after the image itself).

    ``maps[method]``: one value per pixel [n, H, W] (see :func:`reduce_channels`). ``normalise``:
    "shared" puts every map on one colour scale (the largest |value| over all methods); "per-method"
    divides each method's maps by that method's largest |value|, so methods on different scales can
    be compared by shape (the shared colour bar then runs over [−1, 1] or [0, 1]); "per-map" divides
    every map by its own largest |value|, so a weak sample stays visible. Signed maps use a
    diverging scale centred on 0, non-negative maps a sequential one. Samples flagged in
    ``nan_samples[method]`` (or whose map is not finite) are left empty with a note. ``outlines``
    (bool [n, H, W] at the maps' resolution, e.g. the object masks) draws each region's outline in
    every cell of its sample, as a contour at 0.5 of the (block-averaged) mask. ``saturate`` (a
    quantile in (0, 1], e.g. 0.99) sets every scale above by that quantile of |value| instead of
    the largest one, so a few extreme pixels (gradients are spiky) do not wash the rest out; values
    beyond it take the end colour (as Captum's ``outlier_perc`` does). ``fade``: colours fade to
    transparent towards 0 (the image shows through where the map is near 0; ``opacity`` is then the
    end colours' alpha) instead of a uniform ``opacity``."""
    if normalise not in ("shared", "per-method", "per-map"):
        raise ValueError(f"normalise must be 'shared', 'per-method' or 'per-map', got {normalise!r}")
    names = list(maps)
    arrays = {m: _block_mean(np.asarray(maps[m], np.float64), max_side) for m in names}
    n = len(next(iter(arrays.values()))) if arrays else (0 if images is None else len(images))
    bad = {m: (np.asarray(nan_samples[m], bool) if nan_samples and m in nan_samples else np.zeros(n, bool))
           | ~np.isfinite(arrays[m].reshape(n, -1)).all(1) for m in names}
    if saturate is not None and not 0.0 < saturate <= 1.0:
        raise ValueError(f"saturate must be a quantile in (0, 1], got {saturate!r}")

    def top(a: np.ndarray) -> float:  # the |value| the colour scale ends at
        a = np.abs(a[np.isfinite(a)])
        if not a.size:
            return 0.0
        return float(a.max() if saturate is None else np.quantile(a, saturate))

    if normalise == "per-method":
        for m in names:
            scale = top(arrays[m][~bad[m]])
            arrays[m] = arrays[m] / scale if scale > 0 else arrays[m]
    elif normalise == "per-map":
        for m in names:
            scale = np.array([top(a) for a in arrays[m]])
            arrays[m] = arrays[m] / np.where(scale > 0, scale, 1.0)[:, None, None]
    finite = [arrays[m][~bad[m]] for m in names if (~bad[m]).any()]
    if normalise == "shared":
        vmax = top(np.concatenate([a.ravel() for a in finite])) if finite else 1.0
    else:  # normalised maps end at 1 (saturated ones beyond it)
        vmax = max((min(float(np.abs(a).max()), 1.0) for a in finite), default=1.0)
    vmax = vmax or 1.0
    signed = any((a < 0).any() for a in finite)
    zmin, zmax = (-vmax, vmax) if signed else (0.0, vmax)
    cols = len(names) + (1 if images is not None else 0)
    titles = []
    for i in range(n):
        row_title = sample_titles[i] if sample_titles is not None else f"sample {i}"
        titles += ([row_title] if images is not None else []) + [m if i == 0 else "" for m in names]
    fig = make_subplots(rows=max(n, 1), cols=max(cols, 1), subplot_titles=titles, horizontal_spacing=0.01,
                        vertical_spacing=0.04 if n > 1 else 0.1)
    side = max(next(iter(arrays.values())).shape[-2:]) if arrays else max_side
    edges = None if outlines is None else _block_mean(np.asarray(outlines, np.float64), max_side)
    for i in range(n):
        src = _png(images[i], side) if images is not None else None  # at the maps' resolution, so pixels line up
        c0 = 1
        if images is not None:
            fig.add_trace(go.Image(source=src, hoverinfo="skip"), row=i + 1, col=1)
            c0 = 2
        for j, m in enumerate(names):
            r, c = i + 1, c0 + j
            z = arrays[m][i]
            h, w = z.shape
            if src is not None:
                fig.add_trace(go.Image(source=src, hoverinfo="skip"), row=r, col=c)
            if bad[m][i]:
                fig.add_annotation(text="NaN in map<br>(not drawn)", showarrow=False, row=r, col=c,
                                   x=(w - 1) / 2, y=(h - 1) / 2, font=dict(color="crimson"))
            else:
                fig.add_trace(go.Heatmap(z=z.astype(np.float32), coloraxis="coloraxis",
                                         opacity=opacity if src and not fade else 1.0,
                                         hovertemplate=f"{m}<br>x %{{x}}, y %{{y}}<br>%{{z:.3g}}<extra></extra>"),
                              row=r, col=c)
        if edges is not None and edges[i].max() > 0.5:
            for c in range(1, cols + 1):
                fig.add_trace(_outline(edges[i], outline_colour), row=i + 1, col=c)
    h, w = next(iter(arrays.values())).shape[-2:] if arrays else (max_side, max_side)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, range=[-0.5, w - 0.5], constrain="domain")
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, range=[h - 0.5, -0.5], constrain="domain")
    for k in range(1, max(n, 1) * max(cols, 1) + 1):  # square pixels in every cell
        fig.update_layout({f"yaxis{'' if k == 1 else k}": dict(scaleanchor=f"x{'' if k == 1 else k}")})
    scale = (_fading(signed, opacity) if fade and images is not None else DIVERGING if signed else SEQUENTIAL)
    fig.update_layout(coloraxis=dict(colorscale=scale, cmin=zmin, cmax=zmax,
                                     colorbar=dict(title="value" if normalise == "shared" else f"{normalise}<br>scale",
                                                   len=min(1.0, 300 / max(150 * n, 1) + 0.3))))
    return _layout(fig, title, height=max(240, 150 * n + 80), width=None)


#: the fading scales' stops: (position, RGB, share of the end alpha); 0 is fully transparent
_FADE_DIVERGING = ((0.0, (5, 48, 97), 1.0), (0.2, (33, 102, 172), 0.85), (0.4, (146, 197, 222), 0.35),
                   (0.5, (247, 247, 247), 0.0), (0.6, (244, 165, 130), 0.35), (0.8, (178, 24, 43), 0.85),
                   (1.0, (103, 0, 31), 1.0))
_FADE_SEQUENTIAL = ((0.0, (0, 0, 4), 0.0), (0.25, (120, 28, 109), 0.45), (0.5, (237, 105, 37), 0.8),
                    (0.75, (251, 180, 26), 0.95), (1.0, (252, 255, 164), 1.0))


def _fading(signed: bool, alpha: float) -> list[list]:
    """A colour scale whose colours fade to transparent towards 0 (the middle of a diverging scale, the bottom
    of a sequential one), reaching ``alpha`` at the ends."""
    stops = _FADE_DIVERGING if signed else _FADE_SEQUENTIAL
    return [[pos, f"rgba({r},{g},{b},{alpha * share:.3f})"] for pos, (r, g, b), share in stops]


def _outline(mask: np.ndarray, colour: str) -> go.Contour:
    """The 0.5 level line of a (block-averaged) mask: the region's outline, no fill, no colour bar."""
    return go.Contour(z=mask.astype(np.float32), contours=dict(start=0.5, end=0.5, size=1, coloring="none"),
                      line=dict(color=colour, width=1.5), showscale=False, hoverinfo="skip", name="outline",
                      showlegend=False)


def value_histograms(maps: Mapping[str, np.ndarray], bins: int = 60, normalise: bool = False,
                     title: str | None = None) -> go.Figure:
    """The distribution of attribution values per method, binned in numpy (NaN left out and counted).

    Without ``normalise`` each method gets its own panel and range (their scales differ by orders
    of magnitude); with it every map is divided by its method's largest |value| and all methods
    share one panel on [−1, 1]."""
    names = list(maps)
    values = {m: np.asarray(maps[m], np.float64).ravel() for m in names}
    if normalise:
        fig = go.Figure()
        edges = np.linspace(-1, 1, bins + 1)
        for i, m in enumerate(names):
            v = values[m][np.isfinite(values[m])]
            scale = np.abs(v).max() if v.size else 0.0
            v = v / scale if scale > 0 else v
            h, _ = np.histogram(v, bins=edges)
            fig.add_bar(x=0.5 * (edges[1:] + edges[:-1]), y=h / max(v.size, 1), name=_label(m, values[m]),
                        marker_color=colour(i), opacity=0.55, width=edges[1] - edges[0])
        fig.update_xaxes(title="value / largest |value| of the method")
        fig.update_yaxes(title="share of values")
        return _layout(fig, title, barmode="overlay", bargap=0)
    fig = make_subplots(rows=max(len(names), 1), cols=1, subplot_titles=[_label(m, values[m]) for m in names],
                        vertical_spacing=0.08 if len(names) > 1 else 0.1)
    for i, m in enumerate(names):
        v = values[m][np.isfinite(values[m])]
        if v.size == 0:
            continue
        lo, hi = np.quantile(v, [0.001, 0.999])
        if not hi > lo:
            lo, hi = v.min() - 0.5, v.max() + 0.5
        edges = np.linspace(lo, hi, bins + 1)
        h, _ = np.histogram(np.clip(v, lo, hi), bins=edges)
        fig.add_bar(x=0.5 * (edges[1:] + edges[:-1]), y=h / v.size, marker_color=colour(i), width=edges[1] - edges[0],
                    name=m, showlegend=False, row=i + 1, col=1)
    fig.update_yaxes(title="share")
    return _layout(fig, title, height=max(260, 170 * len(names) + 60), bargap=0)


def _label(method: str, v: np.ndarray) -> str:
    bad = int((~np.isfinite(v)).sum())
    return f"{method} ({bad} NaN values left out)" if bad else method


def sample_bars(values: Mapping[str, np.ndarray], feature_names: Sequence[str], top_k: int | None = None,
                title: str | None = None) -> go.Figure:
    """One sample's attribution per feature, grouped by method (horizontal bars), the features
    ordered by their largest |value| over the methods; ``top_k`` keeps only the strongest."""
    names = list(values)
    table = np.stack([np.asarray(values[m], np.float64).ravel() for m in names]) if names else np.zeros((0, 0))
    if table.size and table.shape[1] != len(feature_names):
        raise ValueError(f"{table.shape[1]} values per method but {len(feature_names)} feature names")
    strength = np.nanmax(np.abs(table), axis=0) if table.size else np.zeros(len(feature_names))
    order = np.argsort(-np.nan_to_num(strength, nan=-1), kind="stable")
    if top_k is not None:
        order = order[:top_k]
    order = order[::-1]  # strongest on top
    fig = go.Figure()
    for i, m in enumerate(names):
        fig.add_bar(y=[feature_names[j] for j in order], x=table[i, order], orientation="h", name=m, marker_color=colour(i))
    fig.add_vline(x=0, line=dict(color="grey", width=1))
    fig.update_xaxes(title="attribution")
    return _layout(fig, title, barmode="group", height=max(300, 22 * len(order) * max(1, len(names)) // 2 + 140))


def global_importance(maps: Mapping[str, np.ndarray], feature_names: Sequence[str], top_k: int | None = None,
                      normalise: bool = True, title: str | None = None) -> go.Figure:
    """Global importance per feature: the mean |attribution| over the samples [n, F], per method
    (NaN rows left out). ``normalise`` divides each method's bars by their sum, so methods on
    different scales share an axis (share of the total importance)."""
    names = list(maps)
    table = []
    for m in names:
        a = np.abs(np.asarray(maps[m], np.float64))
        ok = np.isfinite(a).all(1)
        mean = a[ok].mean(0) if ok.any() else np.full(a.shape[1], np.nan)
        if normalise and np.nansum(mean) > 0:
            mean = mean / np.nansum(mean)
        table.append(mean)
    table = np.stack(table) if table else np.zeros((0, len(feature_names)))
    strength = np.nanmax(table, axis=0) if table.size else np.zeros(len(feature_names))
    order = np.argsort(-np.nan_to_num(strength, nan=-1), kind="stable")
    if top_k is not None:
        order = order[:top_k]
    order = order[::-1]
    fig = go.Figure()
    for i, m in enumerate(names):
        fig.add_bar(y=[feature_names[j] for j in order], x=table[i, order], orientation="h", name=m, marker_color=colour(i))
    fig.update_xaxes(title="share of mean |attribution|" if normalise else "mean |attribution|")
    return _layout(fig, title, barmode="group", height=max(300, 22 * len(order) * max(1, len(names)) // 2 + 140))


def perturbation_curves(curves: Mapping[str, object], title: str | None = None,
                        yaxis: str = "probability of the target") -> go.Figure:
    """Deletion / insertion curves: ``curves[method]`` is a ``core.attribution.metrics.Curve`` (e.g.
    ``AttributionResult.curves[method]["deletion"]``) or a pair (fractions [S+1], scores [N, S+1]);
    the mean over the samples as a line with the interquartile range as a band, and the AUC in the legend."""
    fig = go.Figure()
    for i, (m, curve) in enumerate(curves.items()):
        frac, scores = (curve.fractions, curve.scores) if hasattr(curve, "fractions") else curve
        frac = np.asarray(frac, np.float64)
        scores = np.asarray(scores, np.float64)
        scores = scores[np.isfinite(scores).all(1)]
        if not len(scores):
            continue
        mean = scores.mean(0)
        q1, q3 = np.quantile(scores, [0.25, 0.75], axis=0)
        auc = float(np.trapezoid(mean, frac))
        c = colour(i)
        fig.add_scatter(x=np.r_[frac, frac[::-1]], y=np.r_[q3, q1[::-1]], fill="toself", fillcolor=c, opacity=0.15,
                        line=dict(width=0), hoverinfo="skip", showlegend=False)
        fig.add_scatter(x=frac, y=mean, mode="lines", name=f"{m} (AUC {auc:.3f})", line=dict(color=c))
    fig.update_xaxes(title="share of pixels changed", range=[0, 1])
    fig.update_yaxes(title=yaxis)
    return _layout(fig, title)


__all__ = ["global_importance", "heatmap_grid", "perturbation_curves", "reduce_channels", "sample_bars",
           "value_histograms"]
