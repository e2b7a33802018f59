"""The Dask job engine: timing jobs never overlap, cancel works in every phase with a real compile job,
a second worker on this machine takes jobs, and run records come back through the engine."""

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from core import jobs
from core.jobs import JobKind, JobRunner
from core.run_store import default_store


@pytest.fixture
def runner(tmp_path):
    return JobRunner(tmp_path / "jobs")


@pytest.fixture
def measuring_job(monkeypatch):
    monkeypatch.setitem(jobs.JOBS, "test-measure", JobKind("tests.job_functions:timed_phase", measures=True))
    monkeypatch.setitem(jobs.JOBS, "test-compute", JobKind("tests.job_functions:timed_phase", measures=False))


def _overlap(a, b) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def test_timing_jobs_never_overlap_while_compute_jobs_share_a_worker(runner, measuring_job):
    timed = [runner.submit("test-measure", {"seconds": 0.6}) for _ in range(3)]
    positions = [runner.get(job_id).queue_position for job_id in timed]
    assert positions[0] is None or positions == sorted(positions)  # queued jobs know their place
    done = [runner.wait(job_id, timeout_s=60) for job_id in timed]
    assert all(job.status == "done" for job in done), [job.error for job in done]
    results = [job.result for job in done]
    assert not any(_overlap(a, b) for i, a in enumerate(results) for b in results[i + 1:])
    assert all(job.machine == socket.gethostname() and job.worker for job in done)
    assert all(job.started >= job.created and job.finished >= job.started for job in done)

    compute = [runner.submit("test-compute", {"seconds": 1.0}) for _ in range(2)]
    both = [runner.wait(job_id, timeout_s=60).result for job_id in compute]
    assert _overlap(*both)  # two compute jobs may run side by side (half of MEASURE each)


def test_a_timing_job_waits_for_running_compute_jobs(runner, measuring_job):
    compute = runner.submit("test-compute", {"seconds": 1.0})
    while runner.get(compute).status != "running":
        time.sleep(0.05)
    timed = runner.wait(runner.submit("test-measure", {"seconds": 0.2}), timeout_s=60)
    assert timed.status == "done" and not _overlap(runner.wait(compute).result, timed.result)


@pytest.mark.slow  # a real TVM compile job
def test_cancel_ends_a_real_compile_job_while_running_and_before_it_starts(runner):
    params = {"model": "bert-tiny", "whatif": 0.9, "block": "16x1", "seq_len": 16, "threads": 1, "repeats": 2}
    running = runner.submit("tvm", params)
    queued = runner.submit("tvm", {**params, "seq_len": 32})  # waits: both time, so they hold all of MEASURE
    while (job := runner.get(running)).status != "running" or job.progress <= 0.0:
        time.sleep(0.05)
    assert runner.get(queued).status == "queued" and runner.get(queued).queue_position == 1
    runner.cancel(queued)
    pid = runner.get(running).pid
    start = time.monotonic()
    runner.cancel(running)
    job = runner.wait(running, timeout_s=5, poll_s=0.05)
    assert job.status == "cancelled" and time.monotonic() - start < 2.0
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and jobs._pid_alive(pid):
        time.sleep(0.05)
    assert not jobs._pid_alive(pid)  # the job's process ended, not just its record
    time.sleep(1.0)  # the cancelled queued job had its chance to start, and did not
    never = runner.get(queued)
    assert never.status == "cancelled" and never.started is None and not runner.log_path(queued).exists()
    assert default_store().query(kind="tvm") == []


def test_a_job_process_killed_like_the_oom_killer_fails_with_a_message(runner, monkeypatch):
    job_id = runner.submit("tests.job_functions:count", {"n": 1000, "delay": 0.1})
    while runner.get(job_id).status != "running":
        time.sleep(0.05)
    os.kill(runner.get(job_id).pid, 9)
    job = runner.wait(job_id, timeout_s=10)
    assert job.status == "failed" and "SIGKILL" in job.error and "out of memory" in job.error


def test_runs_a_job_records_come_back_with_their_ids(runner):
    job = runner.wait(runner.submit("tests.job_functions:record_a_run", {}), timeout_s=60)
    [record] = default_store().query(kind="test")
    assert job.result == {"run_id": record.id} and record.machine == socket.gethostname()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # starts a scheduler and a worker process
def test_a_second_worker_started_with_dask_worker_takes_jobs(tmp_path, monkeypatch, measuring_job):
    dask = shutil.which("dask", path=os.path.dirname(sys.executable))
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=str(jobs.REPO_ROOT))
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                  "--dashboard-address", ":0"], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([dask, "worker", address, "--nthreads", "4", "--name", "second-worker",
                               "--resources", "MEASURE=1,MEMORY=8", "--no-dashboard"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=jobs.REPO_ROOT)
    try:
        runner = JobRunner(tmp_path / "jobs", scheduler=address)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if runner.client.scheduler_info()["workers"]:
                    break
            except Exception:
                pass
            time.sleep(0.5)
        job = runner.wait(runner.submit("test-measure", {"seconds": 0.2}), timeout_s=60)
        assert job.status == "done", job.error
        assert job.result["pid"] != os.getpid() and job.machine == socket.gethostname()
        info = runner.client.scheduler_info()["workers"]
        assert job.worker in info and info[job.worker]["name"] == "second-worker"
        recorded = runner.wait(runner.submit("tests.job_functions:record_a_run", {}), timeout_s=60)
        [record] = default_store().query(kind="test")
        assert recorded.result == {"run_id": record.id}
        assert record.environment["worker"] == "second-worker" and record.machine == socket.gethostname()
    finally:
        jobs._CLIENTS.pop(address, None) and None
        worker.terminate()
        scheduler.terminate()
        worker.wait(timeout=20)
        scheduler.wait(timeout=20)


@pytest.mark.slow  # serves the dashboard
def test_health_answers_within_a_second_while_two_jobs_run(runner, measuring_job):
    import urllib.request

    from tests.test_app import REPO

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                               "--server.address", "127.0.0.1", "--server.port", str(port)],
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/_stcore/health"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(url, timeout=5).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        busy = [runner.submit("test-compute", {"seconds": 20}) for _ in range(2)]
        while any(runner.get(job_id).status != "running" for job_id in busy):
            time.sleep(0.1)
        answers = []
        for _ in range(5):
            start = time.monotonic()
            assert urllib.request.urlopen(url, timeout=5).read() == b"ok"
            answers.append(time.monotonic() - start)
            time.sleep(0.5)
        assert all(runner.get(job_id).status == "running" for job_id in busy)  # both CPU-bound jobs ran throughout
        assert max(answers) < 1.0, answers
        for job_id in busy:
            runner.cancel(job_id)
    finally:
        server.terminate()
        server.wait(timeout=30)
