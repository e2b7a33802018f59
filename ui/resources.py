"""Process-wide handles on the engine's stores, shared by every session of the dashboard.

Each is cached per location, so a change of ``SPARSELAB_*`` settings (as in tests) gets a fresh handle.
"""

from pathlib import Path

import streamlit as st

from core.artifact_cache import ArtifactCache
from core.jobs import JobRunner
from core.run_store import RunStore
from core.settings import Settings


def run_store() -> RunStore:
    return _run_store(Settings.from_env().store_path)


def artifact_cache() -> ArtifactCache:
    settings = Settings.from_env()
    return _artifact_cache(settings.cache_dir, settings.cache_cap_bytes)


def job_runner() -> JobRunner:
    return _job_runner(Settings.from_env().jobs_dir)


@st.cache_resource
def _run_store(path: Path) -> RunStore:
    return RunStore(path)


@st.cache_resource
def _artifact_cache(root: Path, cap_bytes: int) -> ArtifactCache:
    return ArtifactCache(root, cap_bytes)


@st.cache_resource
def _job_runner(jobs_dir: Path) -> JobRunner:
    return JobRunner(jobs_dir)
