"""SparseLab dashboard: the router and the sidebar every page shares."""

import streamlit as st

import core  # noqa: F401  (sets the process-wide environment switches before anything imports TF)
from ui.environment import environment_summary
from ui.jobs import read_only
from ui.navigation import HOME, PAGES

st.set_page_config(page_title="SparseLab", page_icon=":material/grid_on:", layout="wide")

ROUTES = [st.Page(page.path, title=page.title, icon=page.material_icon, url_path=page.slug or None,
                  default=page is HOME) for page in PAGES]

navigation = st.navigation(ROUTES)
with st.sidebar:
    st.caption("SparseLab — what does sparsity buy this model?")
    environment_summary()
    if read_only():
        st.info("Read-only: browse, compare and download; no jobs start here.", icon=":material/lock:")
navigation.run()
