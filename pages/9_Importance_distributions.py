"""Compare and export the importance distributions kept from any analysis."""
import streamlit as st

import core.viz as viz
from ui import importance_store as store
from ui import workspace as wsp

wsp.page_header("Importance distributions",
                "Every analysis can keep its result as an importance distribution (one value per sample, token, pixel, "
                "feature or mechanism). Compare them here on one scale and export them.", ":material/bar_chart:")

items = store.kept()
if not items:
    st.info("No distributions kept yet. Run an analysis (for example **OOD detection** in the sidebar) and press "
            "“Keep as importance distributions”.")
    st.stop()

chosen = st.multiselect("Distributions", list(items), default=list(items)[-min(8, len(items)):], key="imp_chosen",
                        help="The most recently kept ones are chosen first.")
if not chosen:
    st.warning("Choose at least one distribution.")
    st.stop()
sel = {k: items[k] for k in chosen}
c1, c2 = st.columns(2)
scale = c1.radio("Scale", ["raw", "z-score", "rank percentile"], horizontal=True, key="imp_scale",
                 help="Different methods score on different scales; z-scores or rank percentiles put them side by side.")
kind = c2.radio("Plot", ["histogram", "ecdf"], horizontal=True, key="imp_kind")
groups = {k: store.transform(v.values, scale) for k, v in sel.items()}
st.plotly_chart(viz.score_distributions(groups, kind=kind, xaxis=f"importance ({scale})"), width="stretch")
st.subheader("Summary")
summary = store.summary_table(sel)
st.dataframe(summary.style.format({c: "{:.4g}" for c in summary.columns if c not in ("distribution", "unit", "n")},
                                  na_rep="—"), width="stretch", hide_index=True)
st.caption("Gini and entropy measure how concentrated |importance| is over the units (Gini 1: one unit carries it "
           "all). They are left out (—) for scores with an arbitrary zero, such as OOD scores.")
if len(sel) > 1:
    st.subheader("Pairwise comparison")
    st.caption("Spearman/Kendall: rank agreement when both score the same units. KS and Wasserstein: how far apart "
               "the two distributions are (on raw values).")
    pairs = store.pairwise_table(sel)
    st.dataframe(pairs.style.format({c: "{:.3g}" for c in pairs.columns if c not in ("a", "b")}), width="stretch",
                 hide_index=True)
st.download_button("Download the chosen distributions (CSV)", store.export_csv(sel), "importances.csv", "text/csv")
with st.expander("Provenance"):
    for k, v in sel.items():
        st.markdown(f"**{k}** · unit: {v.unit}")
        st.json({a: b for a, b in v.provenance.items() if isinstance(b, (str, int, float, bool, list, dict)) or b is None},
                expanded=False)
if st.button("Forget all kept distributions", key="imp_clear"):
    items.clear()
    st.rerun()
