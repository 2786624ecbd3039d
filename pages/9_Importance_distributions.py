"""The Importance hub: compare, save and export the importance distributions kept from any analysis."""
import streamlit as st

from ui import importance_hub as hub
from ui import importance_store as store
from ui import workspace as wsp

wsp.page_header("Importance distributions",
                "Every analysis can keep its result as an importance distribution (one value per sample, token, pixel, "
                "feature or mechanism). Compare them here, save them to a file and take away a report.",
                ":material/bar_chart:")

items = store.kept()
hub.load_control()
if not items:
    st.info("No distributions kept yet. Run an analysis (for example **OOD detection** in the sidebar) and press its "
            "**Keep** button, or load a file saved from this page above.")
    st.stop()

hub.shelf_editor(items)
chosen = st.multiselect("Distributions to compare", list(items), default=list(items)[-min(8, len(items)):],
                        key="imp_chosen", help="The most recently kept ones are chosen first.")
if not chosen:
    st.warning("Choose at least one distribution.")
    st.stop()
sel = {k: items[k] for k in chosen}
hub.distributions(sel)
hub.summary(sel)
if len(sel) > 1:
    hub.comparisons(sel)
hub.export(sel)
