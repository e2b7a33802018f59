"""A page's background job: start it, follow its progress, cancel it, read its result.

The job id is kept in the URL (``?job_<name>=<id>``) so a browser refresh, or a
colleague given the link, finds the same job; the work itself runs on the job
engine (core/jobs.py) and never blocks the page. A queued job shows its place in
the queue and how long it has waited.
"""

from __future__ import annotations

import re

import streamlit as st

from core.errors import SparseLabError
from core.jobs import Job
from core.settings import Settings
from ui.resources import job_runner


def _session_id() -> str | None:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx else None


def read_only() -> bool:
    """SPARSELAB_READ_ONLY=1: the dashboard shows, compares and downloads, and starts nothing."""
    return Settings.from_env().read_only


def _param(name: str) -> str:
    return f"job_{name.replace('.', '_')}"


def start_job(name: str, params: dict, label: str) -> None:
    """Start the page's job, unless the same job with the same settings is already running
    (pressing Enter in a form and then clicking its button submits it twice)."""
    settings = Settings.from_env()
    if settings.read_only:
        st.warning("This dashboard is read-only (SPARSELAB_READ_ONLY): it shows, compares and downloads runs, "
                   "and starts no jobs.")
        return
    running = current_job(name)
    if running and running.active and running.params == params:
        st.toast("This job is already running.")
        return
    session = _session_id()
    if session and job_runner().queued_in_session(session) >= settings.max_queued_per_session:
        st.error(f"This browser session already has {settings.max_queued_per_session} jobs queued or running "
                 "(SPARSELAB_MAX_QUEUED_PER_SESSION); wait for one to finish or cancel one.")
        return
    try:
        job_id = job_runner().submit(name, params, label=label, session=session)
    except SparseLabError as exc:
        st.error(str(exc))
        return
    st.query_params[_param(name)] = job_id


def current_job(name: str) -> Job | None:
    """The job this page is showing: the one in the URL, else the latest of its kind."""
    job_id = st.query_params.get(_param(name))
    if job_id:
        job = job_runner().get(job_id)
        if job:
            return job
    latest = job_runner().list(name=name, limit=1)
    return latest[0] if latest else None


def job_status(name: str) -> Job | None:
    """Show the page's job; returns it once it has finished (done, failed or cancelled)."""
    job = current_job(name)
    if job is None:
        return None
    if job.active:
        _follow(job.id)
        return None
    _show_outcome(job)
    return job


@st.fragment(run_every=1.0)
def _follow(job_id: str) -> None:
    job = job_runner().get(job_id)
    if not job.active:
        st.rerun(scope="app")
    if job.status == "queued":
        place = f"number {job.queue_position} in the queue" if job.queue_position else "queued"
        st.progress(0.0, text=f"{job.label}: {place}, waiting {job.waited_s:.0f} s for a free worker "
                              "(timings run one at a time, so they stay honest)")
    else:
        where = f" · on {job.machine}" if job.machine else ""
        st.progress(job.progress, text=f"{job.label}: {job.message or job.status}{where}")
        _remember(job)
        history = st.session_state.get(f"job-history-{job.id}")
        if history and len(history) > 1:
            import plotly.graph_objects as go

            figure = go.Figure(go.Scatter(x=[h[0] for h in history], y=[h[1] for h in history], mode="lines"))
            figure.update_layout(height=240, margin={"t": 30, "b": 30}, xaxis_title="step", yaxis_title="loss",
                                 title="Live loss")
            st.plotly_chart(figure, width="stretch", key=f"job-history-chart-{job.id}")
    if st.button("Cancel", key=f"cancel-{job_id}"):
        job_runner().cancel(job_id)
        st.rerun(scope="app")


_STEP_LOSS = re.compile(r"step (\d+), loss ([0-9.eE+-]+)")


def _remember(job: Job) -> None:
    """Keep every (step, loss) a training job reported while this page followed it: a live loss curve."""
    match = _STEP_LOSS.search(job.message or "")
    if match:
        history = st.session_state.setdefault(f"job-history-{job.id}", [])
        point = (int(match[1]), float(match[2]))
        if not history or history[-1][0] != point[0]:
            history.append(point)


def _show_outcome(job: Job) -> None:
    if job.status == "failed":
        st.error(f"{job.label} failed: {job.error}")
        if job.error_detail:
            with st.expander("Details for debugging"):
                st.code(job.error_detail)
    elif job.status == "cancelled":
        st.warning(f"{job.label} was cancelled.")
