"""Driving a dashboard page in streamlit.testing, with its real background job."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.jobs import default_runner

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def open_page(page: str, timeout: int = 120) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=timeout)
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def finish_job(at: AppTest, name: str, timeout_s: float = 900) -> None:
    """Wait for the page's only job called ``name`` to succeed, then rerun the page."""
    [job] = default_runner().list(name=name)
    job = default_runner().wait(job.id, timeout_s=timeout_s)
    assert job.status == "done", job.error
    at.run()
    assert not at.exception, [e.message for e in at.exception]
