"""Figures of the token-pruning analysis: pure builders, data in, ``go.Figure`` out.

They take the plain tables and arrays of :class:`core.pruning.SweepResult` (``table()``,
``retention_table()``, ``layer_statistics()``, ``agreement()``, a point's ``layers``), never the
result object itself, so a notebook can feed them anything of the same shape.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import _layout, colour, heatmap_table, score_distributions

COST_AXES = {"gmacs": "GMACs per image", "images_per_s": "measured images/s", "macs_ratio": "MACs (share of unpruned)"}


def accuracy_vs_cost(table: pd.DataFrame, x: str = "gmacs", title: str | None = None) -> go.Figure:
    """Accuracy against cost, one curve per method (its budgets, sorted by cost) and the unpruned
    model as a star. ``table``: rows with ``method``, ``name``, ``label``, ``accuracy`` and the
    column ``x`` ("gmacs", "images_per_s" or "macs_ratio"); optional ``keep_rate``/``r``."""
    if x not in COST_AXES:
        raise ValueError(f"x must be one of {', '.join(COST_AXES)}, got {x!r}.")
    fig = go.Figure()
    methods = [m for m in dict.fromkeys(table["method"]) if m != "unpruned"]
    for i, method in enumerate(methods):
        rows = table[table["method"] == method].sort_values(x)
        knob = [(f"r = {r:.0f}" if pd.notna(r) else f"keep rate {k:.3g}") if (pd.notna(r) or pd.notna(k)) else ""
                for k, r in zip(rows.get("keep_rate", [np.nan] * len(rows)), rows.get("r", [np.nan] * len(rows)))]
        fig.add_scatter(x=rows[x], y=rows["accuracy"], mode="lines+markers", name=str(rows["name"].iloc[0]),
                        marker=dict(color=colour(i), size=9), line=dict(color=colour(i)),
                        customdata=np.stack([rows["label"].astype(str), knob], axis=1),
                        hovertemplate="%{customdata[0]}<br>%{customdata[1]}<br>accuracy %{y:.1%}<br>"
                                      + COST_AXES[x] + " %{x:.4g}<extra></extra>")
    base = table[table["method"] == "unpruned"]
    if len(base):
        fig.add_scatter(x=base[x], y=base["accuracy"], mode="markers", name="unpruned",
                        marker=dict(symbol="star", size=16, color="black"),
                        hovertemplate="unpruned<br>accuracy %{y:.1%}<br>" + COST_AXES[x] + " %{x:.4g}<extra></extra>")
    fig.update_yaxes(tickformat=".0%", title="accuracy")
    fig.update_xaxes(title=COST_AXES[x])
    return _layout(fig, title, height=420)


def _group_colours(n: int) -> np.ndarray:
    cols = []
    for i in range(n):
        c = colour(i).lstrip("#")
        cols.append([int(c[j:j + 2], 16) for j in (0, 2, 4)])
    return np.asarray(cols, np.float32)


def overlay_tokens(image: np.ndarray, origin: np.ndarray, grid: tuple[int, int], drop_alpha: float = 0.7,
                   group_alpha: float = 0.5) -> np.ndarray:
    """The image (uint8 [H,W,3]) with dropped patches (origin −1) darkened and every token that holds
    several patches (a merge group, EViT's fused token) tinted in its own colour: uint8 [H,W,3]."""
    img = np.asarray(image, np.float32)
    h, w = img.shape[:2]
    rows, cols = grid
    origin = np.asarray(origin).reshape(rows, cols)
    ys = (np.arange(h) * rows // h)
    xs = (np.arange(w) * cols // w)
    cell = origin[ys][:, xs]  # [H,W]: the token holding each pixel's patch
    out = img.copy()
    dropped = cell < 0
    out[dropped] *= 1.0 - drop_alpha
    alive = origin[origin >= 0]
    tokens, counts = np.unique(alive, return_counts=True)
    groups = tokens[counts > 1]
    palette = _group_colours(max(len(groups), 1))
    for g, token in enumerate(groups):
        sel = cell == token
        out[sel] = (1.0 - group_alpha) * out[sel] + group_alpha * palette[g]
    return np.clip(out, 0, 255).astype(np.uint8)


def kept_tokens(image: np.ndarray, origins: Sequence[np.ndarray], grid: tuple[int, int],
                titles: Sequence[str] | None = None, title: str | None = None) -> go.Figure:
    """The tokens that survive each pruning block, overlaid on the image: one panel per block
    (``origins[i]`` [N0]: the token holding each original patch, −1 dropped), dropped patches
    darkened, merged or fused patches tinted per token. The first panel is the input image."""
    panels = [np.asarray(image, np.uint8)] + [overlay_tokens(image, o, grid) for o in origins]
    names = ["input"] + list(titles or [f"stage {i + 1}" for i in range(len(origins))])
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=names, horizontal_spacing=0.02)
    for i, panel in enumerate(panels):
        fig.add_trace(go.Image(z=panel, hoverinfo="skip"), row=1, col=i + 1)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    size = 220
    extra = 18 if any("<br>" in str(n) for n in names) else 0  # two-line panel titles
    fig.update_layout(template="plotly_white", title=title, height=size + (70 if title else 40) + extra,
                      width=max(400, size * len(panels)), margin=dict(l=10, r=10, t=(60 if title else 30) + extra, b=10))
    return fig


def token_score_maps(scores: Sequence[np.ndarray], grid: tuple[int, int], titles: Sequence[str] | None = None,
                     score_name: str = "score", title: str | None = None) -> go.Figure:
    """The score each pruning block gave every original patch of one image, on the patch grid: one
    panel per block (``scores[i]`` [N0], NaN where the patch was already gone, left blank). A score's
    scale changes with the number of tokens (importances sum to 1), so each panel is coloured by the
    score's rank among that block's patches (0 = lowest, 1 = highest); hovering shows the score."""
    rows, cols = grid
    k = max(1, len(scores))
    fig = make_subplots(rows=1, cols=k, subplot_titles=list(titles or [f"stage {i + 1}" for i in range(k)]),
                        horizontal_spacing=0.02)
    for i, s in enumerate(scores):
        v = np.asarray(s, np.float64).ravel()
        rank = np.full(v.shape, np.nan)
        ok = np.isfinite(v)
        if ok.sum() > 1:
            order = v[ok].argsort(kind="stable").argsort(kind="stable")
            rank[ok] = order / (ok.sum() - 1)
        elif ok.any():
            rank[ok] = 1.0
        fig.add_trace(go.Heatmap(z=rank.reshape(rows, cols), customdata=v.reshape(rows, cols), coloraxis="coloraxis",
                                 hovertemplate="row %{y}, col %{x}<br>" + score_name + " %{customdata:.4g}<br>"
                                               "rank %{z:.0%}<extra></extra>"), row=1, col=i + 1)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed", scaleanchor="x",
                     constrain="domain")
    for i in range(2, k + 1):  # square cells in every panel
        fig.update_yaxes(scaleanchor=f"x{i}", row=1, col=i)
    size = 220
    extra = 18 if any("<br>" in str(n) for n in (titles or ())) else 0  # two-line panel titles
    fig.update_layout(template="plotly_white", title=title, height=size + (70 if title else 40) + extra,
                      width=max(400, size * k + 80), margin=dict(l=10, r=10, t=(60 if title else 30) + extra, b=10),
                      coloraxis=dict(colorscale="Viridis", cmin=0, cmax=1,
                                     colorbar=dict(title="rank", tickformat=".0%", thickness=12)))
    return fig


def importance_by_layer(scores: Mapping[str, np.ndarray], score_name: str = "importance", bins: int = 50,
                        title: str | None = None) -> go.Figure:
    """Distributions of the token scores of several blocks (``scores[label]``: any shape, NaN ignored),
    binned in numpy and overlaid (the shared score-distribution picture)."""
    groups = {k: np.asarray(v, np.float64).ravel() for k, v in scores.items()}
    return score_distributions({k: v[np.isfinite(v)] for k, v in groups.items()}, kind="histogram", bins=bins,
                               title=title, xaxis=score_name)


def layer_statistics(stats: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Entropy and Gini of the per-image token-score distribution against the block, one line per
    configuration. ``stats``: columns ``label``, ``block``, ``entropy``, ``gini``."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["entropy (lower: more concentrated)", "Gini (higher: sparser)"])
    for i, (label, rows) in enumerate(stats.groupby("label", sort=False)):
        rows = rows.sort_values("block")
        for col, key in ((1, "entropy"), (2, "gini")):
            fig.add_scatter(x=rows["block"], y=rows[key], mode="lines+markers", name=str(label),
                            legendgroup=str(label), showlegend=col == 1, marker=dict(color=colour(i)),
                            line=dict(color=colour(i)), row=1, col=col)
    fig.update_xaxes(title="block", dtick=1)
    return _layout(fig, title, height=380)


def retention_by_layer(retention: pd.DataFrame, region: str = "object", title: str | None = None) -> go.Figure:
    """Share of a region's patches (object, marker, background) still held by the tokens after each
    pruning block, one solid line per configuration and its random-keeping expectation dashed.
    ``retention``: columns ``label``, ``block``, ``region``, ``retention``, ``random``."""
    rows_all = retention[retention["region"] == region]
    fig = go.Figure()
    for i, (label, rows) in enumerate(rows_all.groupby("label", sort=False)):
        rows = rows.sort_values("block")
        fig.add_scatter(x=rows["block"], y=rows["retention"], mode="lines+markers", name=str(label),
                        legendgroup=str(label), line=dict(color=colour(i)), marker=dict(color=colour(i)),
                        hovertemplate=f"{label}<br>block %{{x}}<br>{region} retained %{{y:.1%}}<extra></extra>")
        fig.add_scatter(x=rows["block"], y=rows["random"], mode="lines", name=f"{label}: random",
                        legendgroup=str(label), showlegend=False, line=dict(color=colour(i), dash="dot"),
                        hovertemplate=f"random keeping at the budget of {label}<br>block %{{x}}<br>%{{y:.1%}}<extra></extra>")
    fig.update_yaxes(tickformat=".0%", title=f"{region} patches retained", range=[0, 1.02])
    fig.update_xaxes(title="block (after pruning)", dtick=1)
    fig.add_annotation(text="dotted: random keeping at the same budget", showarrow=False, xref="paper", yref="paper",
                       x=1, y=1.06, xanchor="right")
    return _layout(fig, title, height=400)


def head_variance(variance: Mapping[int, np.ndarray], kept: Mapping[int, np.ndarray] | None = None,
                  v_min: float | None = None, v_max: float | None = None, title: str | None = None) -> go.Figure:
    """Zero-TPrune's variance head filter: per pruning block and head, the median over images of the
    variance of N·s (bars: interquartile range, log scale), coloured by the share of images in which
    the filter kept the head; the filter's bounds as dashed lines. ``variance[block]``/``kept[block]``:
    [N, H] arrays."""
    xs, med, lo, hi, share = [], [], [], [], []
    for block, v in variance.items():
        v = np.asarray(v, np.float64)
        q = np.quantile(v, [0.25, 0.5, 0.75], axis=0)
        k = np.asarray(kept[block], np.float64).mean(0) if kept is not None and block in kept else np.ones(v.shape[1])
        for h in range(v.shape[1]):
            xs.append(f"b{block} h{h}")
            med.append(q[1, h])
            lo.append(q[1, h] - q[0, h])
            hi.append(q[2, h] - q[1, h])
            share.append(k[h])
    fig = go.Figure(go.Scatter(
        x=xs, y=np.maximum(med, 1e-12), mode="markers",
        error_y=dict(type="data", symmetric=False, array=hi, arrayminus=lo, color="grey"),
        marker=dict(size=11, color=share, colorscale="RdYlGn", cmin=0, cmax=1, colorbar=dict(title="kept"),
                    line=dict(color="black", width=0.5)),
        customdata=np.asarray(share), hovertemplate="%{x}<br>median variance %{y:.3g}<br>kept in %{customdata:.0%} of images"
                                                     "<extra></extra>", showlegend=False))
    for bound, name in ((v_min, "v_min"), (v_max, "v_max")):
        if bound is not None and bound > 0:
            fig.add_hline(y=bound, line=dict(color="black", dash="dash"))
            # an annotation's y on a log axis is log10 of the value (add_hline's own annotation would put it at 10**bound)
            fig.add_annotation(x=1, xref="paper", y=float(np.log10(bound)), yref="y", text=name, showarrow=False,
                               xanchor="right", yanchor="bottom")
    fig.update_yaxes(type="log", title="variance of N·s (per head)")
    fig.update_xaxes(title="block · head")
    return _layout(fig, title, height=400)


def agreement(matrix: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Kept-token overlap between methods (a square DataFrame with values in [0, 1])."""
    return heatmap_table(matrix.to_numpy(), list(matrix.index), list(matrix.columns), title=title, colorscale="Blues",
                         zmin=0.0, zmax=1.0, fmt=".2f", colorbar_title="overlap")


__all__ = ["COST_AXES", "accuracy_vs_cost", "agreement", "head_variance", "importance_by_layer", "kept_tokens",
           "layer_statistics", "overlay_tokens", "retention_by_layer", "token_score_maps"]
