"""Home: what SparseLab does, the machine it measures on, the cache, the latest runs."""

import streamlit as st

from core.run_store import flat_row
from ui.environment import environment_card
from ui.format import human_bytes
from ui.jobs import read_only
from ui.navigation import HOME, PAGES
from ui.resources import artifact_cache, run_store

st.title("SparseLab")
st.markdown(
    "**What does sparsity buy this model — in size, accuracy and real latency?** "
    "SparseLab prunes real models, stores them compressed, compiles them to sparse kernels "
    "and measures every number on this machine.")
for page in PAGES:
    if page is not HOME:
        st.page_link(page.path, label=f"{page.title}: {page.answers}", icon=page.material_icon)

st.subheader("This machine")
environment_card()

st.subheader("Artifact cache")
cache = artifact_cache()
entries = cache.entries()
used = sum(e.size_bytes for e in entries)
st.progress(min(1.0, used / cache.cap_bytes),
            text=f"{human_bytes(used)} of {human_bytes(cache.cap_bytes)} in {len(entries)} artifacts · {cache.root}")
if entries:
    st.dataframe([{"kind": e.kind, "description": e.description, "size": human_bytes(e.size_bytes),
                   "key": e.key} for e in entries], hide_index=True, width="stretch")
    if st.button("Clear the cache", icon=":material/delete:", key="home-clear-cache", disabled=read_only(),
                 help="Not in read-only mode" if read_only() else None):
        removed = cache.clear()
        st.toast(f"Removed {removed} artifacts")
        st.rerun()

st.subheader("Latest runs")
latest = run_store().query(limit=10)
if latest:
    st.dataframe([flat_row(r) for r in latest], hide_index=True, width="stretch")
else:
    st.info("No runs yet: every measurement made on the other pages appears here.")
