"""A self-contained HTML report of importance distributions: provenance, statistics, figures,
comparisons and the code that reproduces them. Plotly's JavaScript is embedded once, so the file
opens anywhere with no network.

    html = build_report({"energy · ID": imp, ...}, title="Audit", sections=[Section(...)], code=snippet)
"""
from __future__ import annotations

import datetime as _dt
import html as _html
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import plotly.graph_objects as go

import core.viz as viz
from core.importance import Importance, compare_matrix, same_units

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1150px;color:#1f2430;
line-height:1.45;padding:0 1rem}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #e3e6ee;padding-bottom:.3rem;margin-top:2.2rem}
table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0}th,td{border:1px solid #e3e6ee;padding:.25rem .5rem;
text-align:right}th{background:#f3f5fa}td:first-child,th:first-child{text-align:left}
pre{background:#f3f5fa;padding:.8rem;overflow-x:auto;font-size:.8rem}.muted{color:#667}
details{margin:.4rem 0}summary{cursor:pointer}
"""


MAX_PAIR_ROWS = 28


@dataclass
class Section:
    """An analysis-specific part of a report: a title, some text, tables and figures."""

    title: str
    text: str = ""
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[go.Figure] = field(default_factory=list)


def _table(df: pd.DataFrame, fmt: str = "{:.4g}") -> str:
    def cell(v):
        if isinstance(v, (float, np.floating)):
            return "—" if not np.isfinite(v) else fmt.format(v)
        return _html.escape(str(v))

    head = "".join(f"<th>{_html.escape(str(c))}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in df.itertuples(index=False))
    return f"<div style='overflow-x:auto'><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"


class _Figures:
    """Figures as HTML divs; the first one carries plotly.js inline."""

    def __init__(self):
        self.first = True

    def __call__(self, fig: go.Figure) -> str:
        out = fig.to_html(full_html=False, include_plotlyjs="inline" if self.first else False,
                          config={"displaylogo": False, "responsive": True})
        self.first = False
        return out


def build_report(items: dict[str, Importance], title: str = "Importance Explorer report",
                 sections: list[Section] | None = None, code: str | None = None,
                 subtitle: str | None = None) -> str:
    """The HTML text of a report on ``items`` (and any analysis ``sections``), with ``code`` shown."""
    fig = _Figures()
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body>", f"<h1>{_html.escape(title)}</h1>",
             f"<p class='muted'>{_html.escape(subtitle or '')} Made by Importance Explorer on "
             f"{_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}. Figures are interactive; no network is needed.</p>"]
    for s in sections or []:
        parts.append(f"<h2>{_html.escape(s.title)}</h2>")
        if s.text:
            parts.append(f"<p>{_html.escape(s.text)}</p>")
        for caption, df in s.tables:
            parts.append(f"<p class='muted'>{_html.escape(caption)}</p>{_table(df)}")
        parts.extend(fig(f) for f in s.figures)
    if items:
        parts.append("<h2>Importance distributions</h2>")
        rows = [{"distribution": k, "unit": v.unit, **v.stats()} for k, v in items.items()]
        parts.append("<p class='muted'>Statistics over the finite values; concentration (Gini, entropy, effective "
                     "number, top-k mass) is left out (—) for scores with an arbitrary zero.</p>")
        parts.append(_table(pd.DataFrame(rows)))
        groups = {k: v.flat() for k, v in items.items()}
        parts.append(fig(viz.score_distributions(groups, title="Distributions", xaxis="importance")))
        parts.append(fig(viz.score_distributions(groups, kind="ecdf", title="Empirical CDFs", xaxis="importance")))
        mass = {k: v.lorenz() for k, v in items.items() if v.scale == "mass"}
        if mass:
            parts.append(fig(viz.lorenz_curves(mass)))
        if len(items) > 1:
            parts.append("<h2>Comparisons</h2>")
            names = list(items)
            pairs = []
            from core.importance import compare

            for i, a in enumerate(names):
                for b in names[i + 1:]:
                    c = compare(items[a], items[b])
                    pairs.append({"a": a, "b": b, **{k: v for k, v in c.items() if k != "rank_note"},
                                  "per-unit": "yes" if "rank_note" not in c else (same_units(items[a], items[b])
                                                                                  or "too few units")})
            shown = pairs[:MAX_PAIR_ROWS]
            parts.append("<p class='muted'>Rank agreement (Spearman, Kendall, top-k overlap) where both score the same "
                         "units; distribution distances (Jensen–Shannon on shared bins, Wasserstein, KS) always."
                         + (f" The first {MAX_PAIR_ROWS} of {len(pairs)} pairs; the matrix below has them all."
                            if len(pairs) > MAX_PAIR_ROWS else "") + "</p>")
            parts.append(_table(pd.DataFrame(shown)))
            m = compare_matrix(items, "js_divergence")
            parts.append(fig(viz.heatmap_table(m.values, names, names, title="Jensen–Shannon divergence",
                                               colorscale="Blues", zmin=0, zmax=1, colorbar_title="JS")))
            same = [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if same_units(items[a], items[b]) is None]
            if same:
                a, b = same[0]
                parts.append(fig(viz.paired_scatter(items[a].values, items[b].values, a, b,
                                                    title=f"{a} vs {b} (same units)")))
        parts.append("<h2>Provenance</h2>")
        for k, v in items.items():
            parts.append(f"<details><summary>{_html.escape(k)}</summary><pre>"
                         f"{_html.escape(json.dumps(v.provenance, indent=1, default=str))}</pre></details>")
    if code:
        parts.append("<h2>Reproduce</h2><p>Run from the project's root folder, offline:</p>"
                     f"<pre>{_html.escape(code)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


__all__ = ["Section", "build_report"]
