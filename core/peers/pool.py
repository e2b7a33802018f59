"""The parent side of the worker protocol (core/peers/worker.py): start, load, time in interleaved rounds.

Every worker is loaded up front (loads may overlap: nothing is timed yet), then
timed in rounds: round 1 gives engine A ``calls`` back-to-back calls, then B,
then C ...; round 2 does the same. Each turn opens with one untimed call. A short pause separates engines, so one
engine's spinning thread pool has gone quiet before the next starts, and no two
engines ever run at once. A slow spell on a shared host then lands on every
engine alike instead of on whichever happened to be timed during it. Each
reply echoes its round and carries its start and end on the system-wide
monotonic clock; ``Call`` keeps them, so the order is a record, not a promise.

A worker that fails (an error reply, a crash, a timeout) is closed and reported
by name with its reason; the others carry on. ``WorkerSpec.kind`` picks the
worker's loader, so a runner that is not a peer engine (a TVM library) can join
the same rounds.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.jobs import NO_PROGRESS, Progress
from core.settings import REPO_ROOT

LOAD_TIMEOUT_S = 1800.0  # NNCF on BERT-large at seq 512 takes minutes
CALL_TIMEOUT_S = 600.0
DEFAULT_PAUSE_S = 0.3
# One untimed call opens each engine's turn: after the pause its thread pool sleeps, and the first call
# pays to wake it (bert-tiny, 1 thread: without it the p90 of the calls was 2.4-6x their median, with it 1.2-2x).
ROUND_WARMUP = 1


class WorkerError(Exception):
    """A worker failed; the message says how, for the report's ``skipped`` list."""


@dataclass(frozen=True)
class WorkerSpec:
    name: str  # what reports call it
    kind: str  # a loader in core.peers.worker.LOADERS
    payload: dict = field(default_factory=dict)  # the loader's part of the load message


@dataclass(frozen=True)
class Call:
    """One engine's calls in one round, as its worker reported them."""

    round: int
    worker: str
    times_ms: tuple[float, ...]
    started: float
    ended: float


def _signal_name(code: int) -> str:
    try:
        return f" ({signal.Signals(-code).name})" if code < 0 else ""
    except ValueError:
        return ""


class Worker:
    def __init__(self, spec: WorkerSpec, *, threads: int, log_dir: Path):
        self.spec = spec
        self.log_path = Path(log_dir) / f"{spec.name}.log"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
                   OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
        self._log = open(self.log_path, "wb")
        self._process = subprocess.Popen([sys.executable, "-m", "core.peers.worker"], cwd=REPO_ROOT, env=env,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                         text=True, bufsize=1)
        self._replies: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._process.stdout:
            try:
                self._replies.put(json.loads(line))
            except ValueError:  # not ours: the worker routes library output to its log, but be safe
                continue
        self._replies.put(None)

    @property
    def pid(self) -> int:
        return self._process.pid

    def send(self, message: dict) -> None:
        try:
            self._process.stdin.write(json.dumps(message) + "\n")
            self._process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise WorkerError(self._death(message.get("cmd", "?"))) from None

    def receive(self, what: str, timeout_s: float) -> dict:
        try:
            reply = self._replies.get(timeout=timeout_s)
        except queue.Empty:
            self.kill()
            raise WorkerError(f"no reply to '{what}' within {timeout_s:.0f} s (worker stopped)") from None
        if reply is None:
            raise WorkerError(self._death(what))
        if not reply.get("ok"):
            raise WorkerError(reply.get("error") or "failed without a message")
        return reply

    def request(self, message: dict, timeout_s: float = CALL_TIMEOUT_S) -> dict:
        self.send(message)
        return self.receive(message["cmd"], timeout_s)

    def _death(self, what: str) -> str:
        try:
            code = self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        tail = self.log_tail()
        return (f"the worker process died during '{what}' (exit code {code}{_signal_name(code or 0)})"
                + (f"; last log line: {tail}" if tail else ""))

    def log_tail(self) -> str:
        try:
            lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return ""
        return lines[-1].strip()[:300] if lines else ""

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def ask_to_exit(self) -> None:
        """Send ``exit`` without waiting: a pool asks every worker first, then waits for them all."""
        if self._process.poll() is None:
            try:
                self.send({"cmd": "exit"})
            except WorkerError:
                pass

    def close(self, asked: bool = False) -> None:
        if self._process.poll() is None:
            try:
                if not asked:
                    self.send({"cmd": "exit"})
                self.receive("exit", timeout_s=10)
            except WorkerError:
                pass
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        for stream in (self._process.stdin, self._process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._log.close()


class WorkerPool:
    """Workers by name; ``failures`` collects the ones that dropped out, with their reasons."""

    def __init__(self, specs: list[WorkerSpec], *, threads: int, log_dir: Path):
        self.threads = threads
        self.failures: dict[str, str] = {}
        self.workers: dict[str, Worker] = {}
        for spec in specs:
            try:
                self.workers[spec.name] = Worker(spec, threads=threads, log_dir=log_dir)
            except OSError as exc:
                self.failures[spec.name] = f"could not start a worker process: {exc}"

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        # Each worker takes ~1.5 s to tear its libraries down (measured: six engines closed one after the other
        # added 10 s to every peer run); asked together, they exit in parallel.
        for worker in self.workers.values():
            worker.ask_to_exit()
        for worker in self.workers.values():
            worker.close(asked=True)

    def alive(self) -> dict[str, Worker]:
        return {name: worker for name, worker in self.workers.items() if name not in self.failures}

    def fail(self, name: str, reason: str) -> None:
        self.failures[name] = reason
        self.workers[name].kill()

    def load(self, common: dict, progress: Callable[[str], None] = lambda message: None) -> dict[str, dict]:
        """Send every worker its load message at once, then collect the replies in order."""
        sent = {}
        for name, worker in self.alive().items():
            try:
                worker.send({"cmd": "load", "kind": worker.spec.kind, "threads": self.threads,
                             **common, **worker.spec.payload})
                sent[name] = worker
            except WorkerError as exc:
                self.fail(name, str(exc))
        replies = {}
        for name, worker in sent.items():
            progress(f"loading {name}")
            try:
                replies[name] = worker.receive("load", LOAD_TIMEOUT_S)
            except WorkerError as exc:
                self.fail(name, str(exc))
        return replies

    def rounds(self, *, rounds: int, calls: int, pause_s: float = DEFAULT_PAUSE_S, warm_calls: int = ROUND_WARMUP,
               progress: Progress = NO_PROGRESS) -> list[Call]:
        """``rounds`` x every live worker's ``calls`` timed calls (after ``warm_calls`` untimed ones), interleaved;
        the calls in time order."""
        record: list[Call] = []
        first = True
        for index in range(rounds):
            for name, worker in self.alive().items():
                if not first:
                    time.sleep(pause_s)
                first = False
                progress(index / rounds, f"round {index + 1}/{rounds}: {name}")
                try:
                    reply = worker.request({"cmd": "time", "round": index, "calls": calls,
                                             "warmup": warm_calls})
                except WorkerError as exc:
                    self.fail(name, f"{exc} (in timing round {index + 1})")
                    continue
                record.append(Call(round=reply["round"], worker=name, times_ms=tuple(reply["times_ms"]),
                                   started=reply["started"], ended=reply["ended"]))
        return record
