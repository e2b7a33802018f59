import os
import signal
import time

import pytest

from core.errors import SparseLabError
from core.jobs import JobRunner


@pytest.fixture
def runner(tmp_path):
    return JobRunner(tmp_path / "jobs")


def test_job_runs_in_another_process_and_reports(runner):
    job_id = runner.submit("tests.job_functions:count", {"n": 3}, label="counting")
    job = runner.wait(job_id, timeout_s=60)
    assert job.status == "done", job.error
    assert job.result == {"counted": 3}
    assert job.progress == 1.0 and job.label == "counting"
    assert job.pid != os.getpid()


def test_progress_is_visible_while_running(runner):
    job_id = runner.submit("tests.job_functions:count", {"n": 40, "delay": 0.25})
    deadline = time.time() + 60
    while time.time() < deadline:
        job = runner.get(job_id)
        if job.status == "running" and 0 < job.progress < 1:
            break
        time.sleep(0.1)
    assert job.status == "running" and 0 < job.progress < 1 and job.message.startswith("step")
    runner.cancel(job_id)


def test_cancel_stops_the_worker(runner):
    job_id = runner.submit("tests.job_functions:count", {"n": 1000, "delay": 0.1})
    while runner.get(job_id).status != "running":
        time.sleep(0.05)
    runner.cancel(job_id)
    job = runner.wait(job_id, timeout_s=10)
    assert job.status == "cancelled"
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.kill(job.pid, 0)


def test_user_errors_are_messages_and_crashes_keep_detail(runner):
    refused = runner.wait(runner.submit("tests.job_functions:refuse", {}), timeout_s=60)
    assert refused.status == "failed" and refused.error == "sparsity must be below 1"
    crashed = runner.wait(runner.submit("tests.job_functions:crash", {}), timeout_s=60)
    assert crashed.status == "failed" and crashed.error.startswith("ZeroDivisionError")
    assert "Traceback" in crashed.error_detail


def test_dead_worker_is_reported_failed(runner):
    job_id = runner.submit("tests.job_functions:count", {"n": 1000, "delay": 0.1})
    while runner.get(job_id).status != "running":
        time.sleep(0.05)
    os.killpg(runner.get(job_id).pid, signal.SIGKILL)
    job = runner.wait(job_id, timeout_s=10)
    assert job.status == "failed" and "died" in job.error


def test_unknown_job_is_refused_before_starting(runner):
    with pytest.raises(SparseLabError):
        runner.submit("no-such-job", {})
    assert runner.list() == []


def test_jobs_survive_a_new_runner_handle(runner, tmp_path):
    job_id = runner.submit("tests.job_functions:count", {"n": 1})
    runner.wait(job_id)
    again = JobRunner(tmp_path / "jobs")  # as after a browser refresh / new session
    assert again.get(job_id).status == "done"
    assert [j.id for j in again.list(name="tests.job_functions:count")] == [job_id]
