"""Widget groups of the Importance page: the shelf, distributions side by side, comparisons, export."""
from __future__ import annotations

import json

import numpy as np
import streamlit as st

import core.viz as viz
from core import codegen
from core.importance import Importance, compare_matrix, same_units
from core.report import build_report

from . import importance_store as store
from . import tables
from . import workspace as wsp

COMPARE_METRICS = {"js_divergence": "Jensen–Shannon divergence (0 = same distribution)",
                   "wasserstein": "Wasserstein distance", "ks": "Kolmogorov–Smirnov statistic",
                   "spearman": "Spearman ρ (same units only)", "kendall": "Kendall τ (same units only)"}


def load_control() -> None:
    """Load a file saved from this page onto the shelf; a malformed file gets a message and changes nothing."""
    with st.expander("Load saved results", icon=":material/upload_file:"):
        up = st.file_uploader("A results file saved from this page (.npz)", type=["npz"], key="imp_load",
                              help="Arrays and JSON provenance; nothing in it is executed or unpickled.")
        if up is not None and st.session_state.get("_imp_loaded") != (up.name, up.size):
            with wsp.guard(f"'{up.name}' could not be loaded; the kept distributions are unchanged") as ok:
                names = store.add_loaded(up.getvalue(), up.name)
            if ok[0]:
                st.session_state["_imp_loaded"] = (up.name, up.size)
                st.success(f"Loaded {len(names)} distribution{'s' if len(names) != 1 else ''}: {', '.join(names)}.")


def shelf_editor(items: dict[str, Importance]) -> None:
    """The kept distributions, with renaming and removal."""
    with st.expander(f"Kept distributions ({len(items)})", icon=":material/bookmarks:"):
        for name, imp in items.items():
            st.markdown(f"- **{name}** · {imp.unit} · {imp.values.size:,} values"
                        + (" · score" if imp.scale == "score" else ""))
        c1, c2 = st.columns(2)
        with c1:
            old = st.selectbox("Rename", list(items), key="imp_rename_which")
            new = st.text_input("New name", key="imp_rename_to")
            if st.button("Rename", key="imp_rename", disabled=not new.strip()):
                got = store.rename(old, new)
                st.session_state.pop("imp_chosen", None)
                st.toast(f"Renamed to {got}")
                st.rerun()
        with c2:
            gone = st.multiselect("Remove", list(items), key="imp_remove_which")
            if st.button("Remove", key="imp_remove", disabled=not gone):
                store.remove(gone)
                st.session_state.pop("imp_chosen", None)
                st.rerun()
            if st.button("Forget all kept distributions", key="imp_clear"):
                items.clear()
                st.session_state.pop("imp_chosen", None)
                st.rerun()
        st.caption("The shelf stays on this server under the link in your address bar: a reload finds it again. "
                   "Save it to a file below to keep it longer.")


def distributions(sel: dict[str, Importance]) -> None:
    c1, c2 = st.columns(2)
    scale = c1.radio("Scale", ["raw", "z-score", "rank percentile"], horizontal=True, key="imp_scale",
                     help="Different methods score on different scales; z-scores or rank percentiles put them side "
                          "by side.")
    kind = c2.radio("Plot", ["histogram", "ecdf", "lorenz"], horizontal=True, key="imp_kind",
                    format_func={"histogram": "histogram", "ecdf": "ECDF", "lorenz": "Lorenz curve"}.get,
                    help="The Lorenz curve shows how concentrated |importance| is: the further below the diagonal, "
                         "the fewer units carry it.")
    if kind == "lorenz":
        mass = {k: v for k, v in sel.items() if v.scale == "mass"}
        if not mass:
            st.info("Lorenz curves show how importance mass is concentrated; the chosen distributions are all scores "
                    "with an arbitrary zero (such as OOD scores), where that has no meaning.")
        else:
            st.plotly_chart(viz.lorenz_curves({k: v.lorenz() for k, v in mass.items()}), width="stretch")
            left = [k for k in sel if k not in mass]
            if left:
                st.caption("Not drawn (scores with an arbitrary zero): " + ", ".join(left))
        return
    groups = {k: store.transform(v.values, scale) for k, v in sel.items()}
    st.plotly_chart(viz.score_distributions(groups, kind=kind, xaxis=f"importance ({scale})"), width="stretch")


def summary(sel: dict[str, Importance]) -> None:
    st.subheader("Summary")
    table = store.summary_table(sel)
    num = [c for c in table.columns if c not in ("distribution", "unit", "n", "k")]
    tables.show(table, {c: "{:.4g}" for c in num})
    st.caption("Entropy (nats), normalised entropy (1 = spread evenly), effective number of units (exp entropy), Gini "
               "(1: one unit carries it all) and top-k mass (the share of |importance| in the k largest units) "
               "measure concentration. They are left out (—) for scores with an arbitrary zero, such as OOD scores.")
    units = {v.unit for v in sel.values()}
    if len(units) > 1:
        st.info(f"These distributions score different kinds of units ({', '.join(sorted(units))}): only their shapes "
                "(distribution-level statistics) compare; per-unit agreement needs the same units.",
                icon=":material/info:")


def comparisons(sel: dict[str, Importance]) -> None:
    st.subheader("Pairwise comparison")
    st.caption("Spearman/Kendall and top-k overlap: rank agreement when both score the same units (same unit kind, "
               "shape and data). Jensen–Shannon (on shared bins), Wasserstein and KS: how far apart the two "
               "distributions are (on raw values).")
    pairs = store.pairwise_table(sel)
    num = [c for c in pairs.columns if c not in ("a", "b", "rank_note")]
    tables.show(pairs, {c: "{:.3g}" for c in num})
    metric = st.selectbox("Matrix of", list(COMPARE_METRICS), format_func=COMPARE_METRICS.get, key="imp_matrix")
    m = compare_matrix(sel, metric)
    if np.isfinite(m.values).sum() > len(m):
        bounded = metric in ("js_divergence", "ks", "spearman", "kendall")
        st.plotly_chart(viz.heatmap_table(m.values, list(m.index), list(m.columns), title=COMPARE_METRICS[metric],
                                          colorscale="RdYlGn" if metric in ("spearman", "kendall") else "Blues",
                                          zmin=-1 if metric in ("spearman", "kendall") else 0,
                                          zmax=1 if bounded else None, colorbar_title=metric), width="stretch")
    else:
        st.caption("No pair of the chosen distributions has this number (rank agreement needs the same units).")
    names = list(sel)
    pairs_same = [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if same_units(sel[a], sel[b]) is None]
    if pairs_same:
        label = st.selectbox("Scatter over the same units", [f"{a}  vs  {b}" for a, b in pairs_same], key="imp_pair")
        a, b = pairs_same[[f"{x}  vs  {y}" for x, y in pairs_same].index(label)]
        st.plotly_chart(viz.paired_scatter(sel[a].values, sel[b].values, a, b), width="stretch")


def export(sel: dict[str, Importance]) -> None:
    st.subheader("Export")
    c1, c2, c3 = st.columns(3)
    c3.download_button("Download a report (HTML)", lambda sel=dict(sel): report_html(sel), "importance_report.html",
                       "text/html", key="imp_dl_report", icon=":material/description:", on_click="ignore",
                       help="A self-contained page (no network needed to view it): provenance, statistics, figures, "
                            "comparisons and the code that reproduces each result.")
    c1.download_button("Download the chosen distributions (CSV)", lambda sel=dict(sel): store.export_csv(sel),
                       "importances.csv", "text/csv", key="imp_dl_csv", on_click="ignore")
    c2.download_button("Save the chosen distributions (.npz + JSON provenance)",
                       lambda sel=dict(sel): store.save_bytes(sel), "importances.npz", "application/octet-stream",
                       key="imp_dl_npz", on_click="ignore",
                       help="Load it again with “Load saved results” at the top of this page.")
    with st.expander("Provenance"):
        for k, v in sel.items():
            st.markdown(f"**{k}** · unit: {v.unit}")
            st.json(json.loads(json.dumps(v.provenance, default=str)), expanded=False)


def report_html(sel: dict[str, Importance]) -> bytes:
    """The HTML report of the chosen distributions (built only when the button is pressed: it embeds plotly.js)."""
    snippets = list(dict.fromkeys(s for s in (codegen.snippet_from_provenance(v.provenance) for v in sel.values()) if s))
    return build_report(sel, title="Importance distributions", sections=None,
                        subtitle=f"{len(sel)} distributions kept in Importance Explorer.",
                        code="\n\n".join(snippets) or None).encode()
