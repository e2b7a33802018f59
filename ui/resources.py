"""Process-wide handles on the engine's stores, shared by every session of the dashboard."""

import streamlit as st

from core.artifact_cache import ArtifactCache, default_cache
from core.jobs import JobRunner, default_runner
from core.run_store import RunStore, default_store


@st.cache_resource
def run_store() -> RunStore:
    return default_store()


@st.cache_resource
def artifact_cache() -> ArtifactCache:
    return default_cache()


@st.cache_resource
def job_runner() -> JobRunner:
    return default_runner()
