"""Runs: the run store as a filterable table, with CSV download."""

import streamlit as st

from core.run_store import flat_row, to_csv
from ui.resources import run_store

st.title("Runs")
store = run_store()
st.caption(f"{store.count()} runs in {store.path}")

cols = st.columns(5)
kind = cols[0].selectbox("Kind", [None, *store.distinct("kind")], format_func=lambda v: v or "all", key="runs-kind")
model = cols[1].selectbox("Model", [None, *store.distinct("model")], format_func=lambda v: v or "all", key="runs-model")
method = cols[2].selectbox("Method", [None, *store.distinct("method")], format_func=lambda v: v or "all",
                           key="runs-method")
machine = cols[3].selectbox("Machine", [None, *store.distinct("machine")], format_func=lambda v: v or "all",
                            key="runs-machine", help="The host each run was measured on")
limit = cols[4].number_input("Show at most", min_value=10, max_value=100_000, value=1000, step=100, key="runs-limit")

records = store.query(kind=kind, model=model, method=method, machine=machine, limit=int(limit))
if records:
    st.dataframe([flat_row(r) for r in records], hide_index=True, width="stretch")
    st.download_button("Download CSV", to_csv(records), file_name="sparselab-runs.csv", mime="text/csv",
                       icon=":material/download:")
else:
    st.info("No runs match these filters.")
