"""Long work (compiling, training, converting, sweeping) in background processes.

A job is a registered function ``fn(params, progress) -> dict`` run by a detached
worker process (``python -m core.jobs ID``), so it survives Streamlit reruns and
browser refreshes and never blocks the page. Its state lives in a small SQLite
file: status, progress, message, result, and a short error for the user (the
traceback is kept separately for whoever debugs). Cancelling sends SIGTERM to the
worker's process group; the worker records the cancellation as it exits.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from core.errors import SparseLabError
from core.run_store import sqlite_connect, sqlite_create
from core.settings import REPO_ROOT, Settings

# job name -> "core.<package>.jobs:<name>_job"; a feature package lists its jobs here.
JOB_FUNCTIONS: dict[str, str] = {
    name: f"core.{package}.jobs:{name}_job" for package, names in {
        "pruning": ("prune", "prune_sweep"),
        "storage": ("store", "store_verify"),
        "tflite": ("tflite",),
        "tvm": ("tvm",),
        "whatif": ("whatif", "whatif_check"),
    }.items() for name in names
}

ACTIVE = ("queued", "running")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    label TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    result TEXT,
    error TEXT,
    error_detail TEXT,
    pid INTEGER,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
"""


class JobCancelled(BaseException):  # noqa: N818 (a signal, not an error)
    """Raised in a worker by the cancel signal. A BaseException, like KeyboardInterrupt, so that a job's own
    ``except Exception`` (a compile wrapping a failure) cannot turn a cancellation into "failed"."""


@dataclass(frozen=True)
class Job:
    id: str
    name: str
    label: str
    params: dict
    status: str  # queued | running | done | failed | cancelled
    progress: float
    message: str
    result: dict | None
    error: str | None
    error_detail: str | None
    pid: int | None
    created: float
    updated: float

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


Progress = Callable[[float, str], None]
"""How long work reports how far it got: ``progress(0.4, "compiling")``. Every engine function takes one."""


def NO_PROGRESS(fraction: float, message: str = "") -> None:  # noqa: N802 (a constant that is a function)
    """The progress of work nobody follows."""


def stage(progress: Progress, start: float, end: float) -> Progress:
    """The progress of one stage of a longer work, mapped onto [start, end] of the whole."""
    return lambda fraction, message="": progress(start + (end - start) * fraction, message)


class JobProgress:
    """The ``Progress`` a worker hands its job function: it writes to the job's row, at most every 0.2 s."""

    def __init__(self, runner: JobRunner, job_id: str, min_interval_s: float = 0.2):
        self._runner, self._job_id = runner, job_id
        self._min_interval_s, self._last = min_interval_s, 0.0

    def __call__(self, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if fraction < 1 and now - self._last < self._min_interval_s:
            return
        self._last = now
        self._runner._update(self._job_id, progress=max(0.0, min(1.0, fraction)), message=message)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is dead for our purposes
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def resolve_function(name: str) -> Callable:
    target = JOB_FUNCTIONS.get(name, name)
    module_name, _, attr = target.partition(":")
    if not attr:
        raise SparseLabError(f"Unknown job '{name}'")
    return getattr(importlib.import_module(module_name), attr)


class JobRunner:
    def __init__(self, jobs_dir: Path):
        self.jobs_dir = Path(jobs_dir)
        self.db_path = self.jobs_dir / "jobs.sqlite"
        sqlite_create(self.db_path, _SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite_connect(self.db_path)

    def _update(self, job_id: str, only_if_active: bool = False, **fields) -> None:
        fields["updated"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in fields)
        where = "id = ?" + (" AND status IN ('queued', 'running')" if only_if_active else "")
        with closing(self._connect()) as db, db:
            db.execute(f"UPDATE jobs SET {sets} WHERE {where}", (*fields.values(), job_id))

    def log_path(self, job_id: str) -> Path:
        return self.jobs_dir / f"{job_id}.log"

    def submit(self, name: str, params: dict, label: str = "") -> str:
        """Start ``name`` with ``params`` in a detached worker; return the job id at once."""
        resolve_function(name)  # fail here, in the caller, if the job does not exist
        job_id = uuid.uuid4().hex[:12]
        now = time.time()
        with closing(self._connect()) as db, db:
            db.execute(
                "INSERT INTO jobs (id, name, label, params, status, created, updated) VALUES (?,?,?,?,?,?,?)",
                (job_id, name, label or name, json.dumps(params), "queued", now, now))
        env = dict(os.environ, SPARSELAB_JOBS_DIR=str(self.jobs_dir),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
        with open(self.log_path(job_id), "wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "core.jobs", job_id], cwd=REPO_ROOT, env=env,
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        threading.Thread(target=process.wait, daemon=True).start()  # reap it: no zombies in a long-lived server
        self._update(job_id, pid=process.pid)
        return job_id

    def get(self, job_id: str) -> Job | None:
        job = self.get_raw(job_id)
        return self._reconciled(job) if job else None

    def list(self, name: str | None = None, limit: int = 50) -> list[Job]:
        sql, params = "SELECT * FROM jobs", []
        if name:
            sql, params = sql + " WHERE name = ?", [name]
        with closing(self._connect()) as db:
            rows = db.execute(sql + " ORDER BY created DESC LIMIT ?", (*params, limit)).fetchall()
        return [self._reconciled(_job(r)) for r in rows]

    def _reconciled(self, job: Job) -> Job:
        """A job whose worker vanished without a word (killed, machine restarted) has failed."""
        if job.active and job.pid and not _pid_alive(job.pid):
            self._update(job.id, only_if_active=True, status="failed",
                         error="The worker process died without finishing "
                               "(killed, out of memory, or the machine restarted).")
            return self.get_raw(job.id)
        return job

    def get_raw(self, job_id: str) -> Job | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def cancel(self, job_id: str) -> None:
        job = self.get_raw(job_id)
        if not job or not job.active:
            return
        if job.pid and _pid_alive(job.pid):
            try:
                os.killpg(job.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self._update(job_id, only_if_active=True, status="cancelled", message="cancelled")

    def wait(self, job_id: str, timeout_s: float = 600, poll_s: float = 0.2) -> Job:
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.get(job_id)
            if not job.active or time.monotonic() > deadline:
                return job
            time.sleep(poll_s)

    def run_here(self, job_id: str) -> None:
        """Body of the worker process."""
        job = self.get_raw(job_id)

        def on_sigterm(signum, frame):
            raise JobCancelled()

        signal.signal(signal.SIGTERM, on_sigterm)
        self._update(job_id, status="running", pid=os.getpid())
        try:
            result = resolve_function(job.name)(job.params, JobProgress(self, job_id))
            self._update(job_id, status="done", progress=1.0, result=json.dumps(result, default=str))
        except JobCancelled:
            self._update(job_id, status="cancelled", message="cancelled")
        except SparseLabError as exc:
            self._update(job_id, status="failed", error=str(exc), error_detail=traceback.format_exc())
        except Exception as exc:  # any failure is reported to the page, with the message first
            self._update(job_id, status="failed", error=f"{type(exc).__name__}: {exc}",
                         error_detail=traceback.format_exc())


def _job(row: sqlite3.Row) -> Job:
    data = dict(row)
    data["params"] = json.loads(data["params"])
    data["result"] = json.loads(data["result"]) if data["result"] else None
    return Job(**data)


def default_runner() -> JobRunner:
    return JobRunner(Settings.from_env().jobs_dir)


if __name__ == "__main__":
    from core import jobs  # the registered module, not this __main__ copy

    jobs.default_runner().run_here(sys.argv[1])
