"""SparseLab dashboard: the router and the sidebar every page shares."""

import streamlit as st

import core  # noqa: F401  (sets the process-wide environment switches before anything imports TF)
from ui.environment import environment_summary

st.set_page_config(page_title="SparseLab", page_icon=":material/grid_on:", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/prune.py", title="Prune", icon=":material/content_cut:"),
    st.Page("pages/store.py", title="Store", icon=":material/compress:"),
    st.Page("pages/compile.py", title="Compile", icon=":material/memory:"),
    st.Page("pages/whatif.py", title="What-if", icon=":material/speed:"),
    st.Page("pages/export.py", title="Export", icon=":material/phone_android:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/scatter_plot:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/table_rows:"),
]

navigation = st.navigation(PAGES)
with st.sidebar:
    st.caption("SparseLab — what does sparsity buy this model?")
    environment_summary()
navigation.run()
