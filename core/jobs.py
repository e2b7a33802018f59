"""Long work (compiling, training, converting, timing) as jobs on a Dask cluster, one process per job.

A job is a registered function ``fn(params, progress) -> dict``. The dashboard (or any
caller) submits it through a ``JobRunner``; Dask queues it and runs it on a worker, where it
gets a process of its own (``python -m core.jobs``), so cancelling ends that process and
nothing else, and a job that runs out of memory takes only itself down.

The cluster: an embedded ``LocalCluster`` (one worker, threads in this process; each job is
a child process anyway), or the one ``SPARSELAB_SCHEDULER=tcp://host:8786`` names, which
``dask worker tcp://host:8786 --resources "MEASURE=1,MEMORY=16"`` joins from any machine.

Timings stay honest: every worker declares ``MEASURE=1``. A job that times something
requests all of it, any other job half (``MEASURE_SHARE``), so two compiles may run side by
side but never beside a timing, and two timings never share a worker. Workers on one host
also take a host-wide file lock around a timing job, so two workers on one machine cannot
time at once either. Memory: workers declare ``MEMORY`` (GB) and each job requests its
typical peak (``Job.memory_gb``).

Progress, results and run records reach the dashboard through Dask (worker events and the
task's result), never through a file only one machine can see. The dashboard keeps its own
record of each job (status, queue position, worker, machine) in a small SQLite table.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from core.errors import SparseLabError
from core.run_store import RunRecord, sqlite_connect, sqlite_create
from core.settings import REPO_ROOT, Settings


@dataclass(frozen=True)
class JobKind:
    """A registered job: where its function lives, whether it times anything, its usual memory peak."""

    target: str  # "core.<package>.jobs:<name>_job"
    measures: bool = False
    memory_gb: float = 2.0


def _kinds(package: str, **jobs: tuple[bool, float]) -> dict[str, JobKind]:
    return {name: JobKind(f"core.{package}.jobs:{name}_job", measures, memory)
            for name, (measures, memory) in jobs.items()}


# job name -> where it lives, whether it times something (then it holds a whole worker), its memory (GB).
# A feature package lists its jobs here; peaks measured on BERT-base (a dense TVM compile: 5-6 GB).
JOBS: dict[str, JobKind] = {
    **_kinds("pruning", prune=(False, 3), prune_sweep=(False, 3), sensitivity=(False, 3)),
    **_kinds("storage", store=(True, 3), store_verify=(False, 2)),
    **_kinds("tflite", tflite=(True, 3)),
    **_kinds("tvm", tvm=(True, 6)),
    **_kinds("whatif", whatif=(True, 6), whatif_check=(True, 6)),
    **_kinds("peers", peers=(True, 4)),
    **_kinds("recovery", recover=(False, 6)),
    **_kinds("demo", demo=(True, 6)),
}
JOB_FUNCTIONS: dict[str, str] = {name: kind.target for name, kind in JOBS.items()}

MEASURE = "MEASURE"
MEASURE_SHARE = 0.5  # what a job that times nothing holds of a worker's MEASURE
CANCEL_GRACE_S = 1.0  # SIGTERM, then SIGKILL after this long
ACTIVE = ("queued", "running")
EVENT_TOPIC = "sparselab-job"

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
    updated REAL NOT NULL,
    started REAL,
    finished REAL,
    worker TEXT,
    machine TEXT,
    owner TEXT,
    session TEXT
);
"""
_ADDED_COLUMNS = {"started": "REAL", "finished": "REAL", "worker": "TEXT", "machine": "TEXT", "owner": "TEXT",
                  "session": "TEXT"}  # job tables written before the Dask engine lack these


Progress = Callable[[float, str], None]
"""How long work reports how far it got: ``progress(0.4, "compiling")``. Every engine function takes one."""


def NO_PROGRESS(fraction: float, message: str = "") -> None:  # noqa: N802 (a constant that is a function)
    """The progress of work nobody follows."""


def stage(progress: Progress, start: float, end: float) -> Progress:
    """The progress of one stage of a longer work, mapped onto [start, end] of the whole."""
    return lambda fraction, message="": progress(start + (end - start) * fraction, message)


class JobCancelled(BaseException):  # noqa: N818 (a signal, not an error)
    """Raised in a job's process by the cancel signal. A BaseException, like KeyboardInterrupt, so that a job's
    own ``except Exception`` (a compile wrapping a failure) cannot turn a cancellation into "failed"."""


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
    started: float | None = None
    finished: float | None = None
    worker: str | None = None
    machine: str | None = None
    owner: str | None = None
    session: str | None = None
    queue_position: int | None = None  # 1 = next to start; set on queued jobs by the runner

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def waited_s(self) -> float:
        """How long it waited in the queue (so far, if it still waits)."""
        return (self.started or time.time()) - self.created

    def as_dict(self) -> dict:
        return {key: getattr(self, key) for key in (
            "id", "name", "label", "status", "progress", "message", "error", "queue_position", "worker", "machine",
            "created", "started", "finished")}


def kind_of(name: str) -> JobKind:
    """The registered job, or a ``module:function`` (tests, scripts) taken as a job that times nothing."""
    if name in JOBS:
        return JOBS[name]
    if ":" in name:
        return JobKind(name)
    raise SparseLabError(f"Unknown job '{name}'; known jobs: {', '.join(JOBS)}.")


def resolve_function(name: str) -> Callable:
    module_name, _, attr = kind_of(name).target.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise SparseLabError(f"Job '{name}' names {module_name}:{attr}, which cannot be loaded: {exc}") from exc


# ---------------------------------------------------------------------------------------------- the cluster
_CLUSTER_LOCK = threading.Lock()
_CLIENTS: dict[str, object] = {}


def worker_resources(measure: float = 1.0) -> dict[str, float]:
    """What a SparseLab worker declares: the whole of MEASURE and three quarters of this machine's memory."""
    import psutil

    return {MEASURE: measure, "MEMORY": round(0.75 * psutil.virtual_memory().total / 2**30, 1)}


def cluster_client(scheduler: str | None = None):
    """A Dask client: on ``scheduler`` (``SPARSELAB_SCHEDULER``) or on this process's embedded cluster."""
    from distributed import Client, LocalCluster

    scheduler = scheduler if scheduler is not None else os.environ.get("SPARSELAB_SCHEDULER", "")
    with _CLUSTER_LOCK:
        client = _CLIENTS.get(scheduler)
        if client is not None and client.status == "running":
            return client
        if scheduler:
            try:
                client = Client(scheduler, timeout=10, set_as_default=False)
            except OSError as exc:
                raise SparseLabError(f"No Dask scheduler answers at {scheduler} (SPARSELAB_SCHEDULER): {exc}. "
                                     "Start one with `dask scheduler`, or unset SPARSELAB_SCHEDULER to run jobs "
                                     "on this machine.") from exc
        else:
            # Threads, not processes: a worker only waits on its jobs' own processes.
            cluster = LocalCluster(n_workers=1, threads_per_worker=8, processes=False, dashboard_address=None,
                                   resources=worker_resources(), silence_logs=40, name="sparselab-embedded")
            client = Client(cluster, set_as_default=False)
        _CLIENTS[scheduler] = client
        return client


# ---------------------------------------------------------------------------------------------- the runner
class JobRunner:
    """Submits, follows and cancels jobs; keeps the dashboard's record of them in ``jobs_dir/jobs.sqlite``."""

    def __init__(self, jobs_dir: Path, scheduler: str | None = None):
        self.jobs_dir = Path(jobs_dir)
        self.db_path = self.jobs_dir / "jobs.sqlite"
        self.scheduler = scheduler
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        sqlite_create(self.db_path, _SCHEMA)
        self._migrate()
        self._futures: dict[str, object] = {}
        self._lock = threading.Lock()
        self._subscribed = False

    def _connect(self) -> sqlite3.Connection:
        return sqlite_connect(self.db_path)

    def _migrate(self) -> None:
        with closing(self._connect()) as db, db:
            have = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
            for column, sql_type in _ADDED_COLUMNS.items():
                if column not in have:
                    db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {sql_type}")

    def _update(self, job_id: str, only_if_active: bool = False, **fields) -> None:
        fields["updated"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in fields)
        where = "id = ?" + (" AND status IN ('queued', 'running')" if only_if_active else "")
        with closing(self._connect()) as db, db:
            db.execute(f"UPDATE jobs SET {sets} WHERE {where}", (*fields.values(), job_id))

    @property
    def client(self):
        client = cluster_client(self.scheduler)
        if not self._subscribed:
            client.subscribe_topic(EVENT_TOPIC, self._on_event)
            self._subscribed = True
        return client

    def log_path(self, job_id: str) -> Path:
        return self.jobs_dir / f"{job_id}.log"

    def submit(self, name: str, params: dict, label: str = "", session: str | None = None) -> str:
        """Queue ``name`` with ``params``; return the job id at once. Unknown jobs are refused here."""
        kind = kind_of(name)
        resolve_function(name)  # fail here, in the caller, if the job cannot be loaded
        json.dumps(params)  # params must be JSON: they are stored and sent to another process
        job_id = uuid.uuid4().hex[:12]
        now = time.time()
        with closing(self._connect()) as db, db:
            db.execute("INSERT INTO jobs (id, name, label, params, status, created, updated, owner, session) "
                       "VALUES (?,?,?,?,?,?,?,?,?)",
                       (job_id, name, label or name, json.dumps(params), "queued", now, now, self.owner, session))
        resources = {MEASURE: 1.0 if kind.measures else MEASURE_SHARE, "MEMORY": kind.memory_gb}
        client = self.client
        try:
            future = client.submit(run_task, job_id, kind.target, params, str(self.jobs_dir), kind.measures,
                                   key=f"sparselab-{name}-{job_id}", resources=resources, pure=False)
        except Exception as exc:
            self._update(job_id, status="failed", error=f"The job engine refused the job: {exc}")
            raise SparseLabError(f"The job engine refused '{name}': {exc}") from exc
        with self._lock:
            self._futures[job_id] = future
        future.add_done_callback(lambda f, job_id=job_id: self._finish(job_id, f))
        return job_id

    def _on_event(self, event) -> None:
        _, message = event
        job_id = message.get("job")
        if not job_id:
            return
        try:
            if message.get("kind") == "started":
                self._update(job_id, only_if_active=True, status="running", started=message["time"],
                             pid=message.get("pid"), worker=message.get("worker"), machine=message.get("machine"))
            elif message.get("kind") == "progress":
                self._update(job_id, only_if_active=True, progress=max(0.0, min(1.0, message["fraction"])),
                             message=message.get("message", ""))
        except sqlite3.Error:
            pass  # another runner's job table (a second dashboard on the same cluster): not ours to record

    def _finish(self, job_id: str, future) -> None:
        """Record the outcome of a finished task (done, failed, cancelled, or its worker died)."""
        try:
            self._record_outcome(job_id, future)
        finally:
            with self._lock:
                self._futures.pop(job_id, None)

    def _record_outcome(self, job_id: str, future) -> None:
        if future.cancelled():
            self._update(job_id, only_if_active=True, status="cancelled", message="cancelled", finished=time.time())
            return
        try:
            outcome = future.result()
        except Exception as exc:  # the worker itself died or lost contact: the task could not report
            self._update(job_id, only_if_active=True, status="failed", finished=time.time(),
                         error=f"The worker running this job died or lost contact with the scheduler "
                               f"({type(exc).__name__}: {exc}); the job did not finish.",
                         error_detail="".join(traceback.format_exception(exc)))
            return
        # the worker's clock: when the job's process ended there, not when this process heard of it (timing
        # jobs are back to back, so a late callback would make them look overlapped)
        fields = {"finished": outcome.get("ended", time.time()), "status": outcome["status"]}
        if outcome["status"] == "done":
            result = _import_runs(outcome)
            fields.update(progress=1.0, result=json.dumps(result, default=str))
        elif outcome["status"] == "cancelled":
            fields.update(message="cancelled")
        else:
            fields.update(error=outcome.get("error"), error_detail=outcome.get("error_detail"))
        self._update(job_id, only_if_active=True, **fields)

    def get(self, job_id: str) -> Job | None:
        job = self.get_raw(job_id)
        if job is None:
            return None
        job = self._reconciled(job)
        if job.status == "queued":
            job = _with_position(job, self._queued_ids())
        return job

    def list(self, name: str | None = None, limit: int = 50, session: str | None = None) -> list[Job]:
        sql, params, where = "SELECT * FROM jobs", [], []
        if name:
            where.append("name = ?")
            params.append(name)
        if session:
            where.append("session = ?")
            params.append(session)
        if where:
            sql += " WHERE " + " AND ".join(where)
        with closing(self._connect()) as db:
            rows = db.execute(sql + " ORDER BY created DESC LIMIT ?", (*params, limit)).fetchall()
        queued = self._queued_ids()
        return [_with_position(self._reconciled(_job(r)), queued) for r in rows]

    def _queued_ids(self) -> list[str]:
        with closing(self._connect()) as db:
            return [r["id"] for r in db.execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY created")]

    def _reconciled(self, job: Job) -> Job:
        """An active job whose runner is gone (its process ended) will never report: it failed."""
        if not job.active or job.id in self._futures or job.owner == self.owner:
            return job  # ours: its future reports (the record is written before the future is let go)
        if job.owner and _owner_alive(job.owner):
            return job  # another live runner follows it
        self._update(job.id, only_if_active=True, status="failed", finished=time.time(),
                     error="The dashboard process that ran this job stopped (restarted or killed) before it "
                           "finished; start it again.")
        return self.get_raw(job.id)

    def get_raw(self, job_id: str) -> Job | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def queued_in_session(self, session: str) -> int:
        with closing(self._connect()) as db:
            return db.execute("SELECT COUNT(*) FROM jobs WHERE session = ? AND status IN ('queued', 'running')",
                              (session,)).fetchone()[0]

    def cancel(self, job_id: str) -> None:
        """Queued: it never starts. Running: its process is ended (SIGTERM, SIGKILL after a second)."""
        job = self.get_raw(job_id)
        if not job or not job.active:
            return
        self._update(job_id, only_if_active=True, status="cancelled", message="cancelled", finished=time.time())
        try:
            from distributed import Event

            Event(_cancel_event(job_id), client=self.client).set()
            future = self._futures.get(job_id)
            if future is not None:
                future.cancel()
        except Exception:  # noqa: S110 (the record says cancelled; a gone cluster cannot run it anyway)
            pass

    def wait(self, job_id: str, timeout_s: float = 600, poll_s: float = 0.2) -> Job:
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.get(job_id)
            if not job.active or time.monotonic() > deadline:
                return job
            time.sleep(poll_s)


def _with_position(job: Job, queued: list[str]) -> Job:
    if job.status != "queued" or job.id not in queued:
        return job
    from dataclasses import replace

    return replace(job, queue_position=queued.index(job.id) + 1)


def _owner_alive(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's dashboard: it cannot be checked from here
    return _pid_alive(int(pid))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _job(row: sqlite3.Row) -> Job:
    data = dict(row)
    data["params"] = json.loads(data["params"])
    data["result"] = json.loads(data["result"]) if data["result"] else None
    return Job(**data)


def _cancel_event(job_id: str) -> str:
    return f"sparselab-cancel-{job_id}"


def _import_runs(outcome: dict) -> dict:
    """Run records a job made on another machine's run store join this one's; their ids in the result follow."""
    from core.run_store import default_store

    result = outcome["result"]
    runs = outcome.get("runs") or []
    store = default_store()
    if not runs or outcome.get("store") == str(store.path):
        return result  # the worker wrote to this very store
    mapping = {run["id"]: store.add(RunRecord(**{**run, "id": None})) for run in runs}

    def remap(value, key=""):
        if isinstance(value, dict):
            return {k: remap(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [remap(v, key) for v in value]
        if key in ("run_id", "run_ids") and isinstance(value, int):
            return mapping.get(value, value)
        return value

    return remap(result)


# ---------------------------------------------------------------------------------------------- on the worker
def machine_name() -> str:
    return socket.gethostname()


def _measure_lock_path() -> Path:
    return Path(tempfile.gettempdir()) / f"sparselab-measure-{os.getuid()}.lock"


def run_task(job_id: str, target: str, params: dict, jobs_dir: str, measures: bool) -> dict:
    """The Dask task: run the job in a child process, relay its progress, end it when cancelled."""
    from distributed import Event, get_worker

    worker = get_worker()
    cancel = Event(_cancel_event(job_id))
    if cancel.is_set():
        return {"status": "cancelled"}
    lock = open(_measure_lock_path(), "a+")  # noqa: SIM115 (held for the whole task)
    try:
        if measures:  # two workers on one machine: the second waits here, not during the other's timing
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if cancel.wait(0.2):
                        return {"status": "cancelled"}
        return _run_child(job_id, target, params, Path(jobs_dir), worker, cancel)
    finally:
        lock.close()


def _run_child(job_id: str, target: str, params: dict, jobs_dir: Path, worker, cancel) -> dict:
    jobs_dir.mkdir(parents=True, exist_ok=True)
    read_end, write_end = os.pipe()
    env = dict(os.environ, SPARSELAB_JOB_PIPE=str(write_end), SPARSELAB_WORKER=str(worker.name),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    with open(jobs_dir / f"{job_id}.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "core.jobs"], cwd=REPO_ROOT, env=env,
                                   stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                   pass_fds=(write_end,), start_new_session=True)
    os.close(write_end)
    process.stdin.write(json.dumps({"job": job_id, "target": target, "params": params}).encode())
    process.stdin.close()
    worker.log_event(EVENT_TOPIC, {"job": job_id, "kind": "started", "time": time.time(), "pid": process.pid,
                                   "worker": str(worker.address), "machine": machine_name()})
    final: dict = {}
    reader = threading.Thread(target=_relay, args=(read_end, job_id, worker, final), daemon=True)
    reader.start()
    while process.poll() is None:
        if cancel.wait(0.1):
            _end(process)
            reader.join(timeout=2)
            return {"status": "cancelled", "ended": time.time()}
    reader.join(timeout=5)
    if final:
        return {**final, "ended": time.time()}
    code = process.returncode
    how = (f"killed by signal {-code}" + (" (SIGKILL: most often the machine ran out of memory)"
                                          if code == -signal.SIGKILL else "")) if code < 0 else f"exit code {code}"
    return {"status": "failed", "error": f"The job's process died without finishing ({how}) on {machine_name()}.",
            "error_detail": _tail(jobs_dir / f"{job_id}.log")}


def _relay(fd: int, job_id: str, worker, final: dict) -> None:
    with os.fdopen(fd, "r", encoding="utf-8") as pipe:
        for line in pipe:
            message = json.loads(line)
            if message["kind"] == "progress":
                worker.log_event(EVENT_TOPIC, {"job": job_id, **message})
            else:
                final.update(message)


def _end(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=CANCEL_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class _PipeProgress:
    """The ``Progress`` a job's process hands its function: lines on the pipe, at most every 0.2 s."""

    def __init__(self, pipe, min_interval_s: float = 0.2):
        self._pipe, self._min_interval_s, self._last = pipe, min_interval_s, 0.0

    def __call__(self, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if fraction < 1 and now - self._last < self._min_interval_s:
            return
        self._last = now
        _send(self._pipe, {"kind": "progress", "fraction": float(fraction), "message": str(message)})


def _send(pipe, message: dict) -> None:
    pipe.write(json.dumps(message, default=str) + "\n")
    pipe.flush()


def run_in_this_process() -> None:
    """Body of a job's process: read the job from stdin, run it, send the outcome down the pipe."""
    from core import run_store

    spec = json.loads(sys.stdin.read())
    pipe = os.fdopen(int(os.environ["SPARSELAB_JOB_PIPE"]), "w", encoding="utf-8")

    def on_sigterm(signum, frame):
        raise JobCancelled()

    signal.signal(signal.SIGTERM, on_sigterm)
    added: list[int] = []
    run_store.ADDED_RUN_IDS = added
    try:
        result = resolve_function(spec["target"])(spec["params"], _PipeProgress(pipe))
        json.dumps(result, default=str)
        store = run_store.default_store()
        _send(pipe, {"kind": "final", "status": "done", "result": result, "store": str(store.path),
                     "runs": [record.as_dict() for record in store.get_many(added)]})
    except JobCancelled:
        _send(pipe, {"kind": "final", "status": "cancelled"})
    except SparseLabError as exc:
        _send(pipe, {"kind": "final", "status": "failed", "error": str(exc), "error_detail": traceback.format_exc()})
    except Exception as exc:  # any failure is reported to the page, with the message first
        _send(pipe, {"kind": "final", "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                     "error_detail": traceback.format_exc()})


def default_runner() -> JobRunner:
    return JobRunner(Settings.from_env().jobs_dir)


if __name__ == "__main__":
    from core import jobs  # the registered module, not this __main__ copy

    jobs.run_in_this_process()
    # The outcome is on the pipe and the run store is committed; what is left is the libraries' teardown
    # (torch, TVM, OpenVINO: ~1.4 s measured), during which the task still held its worker and the MEASURE lock.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
