"""One timed engine in its own process: ``python -m core.peers.worker``, driven over stdin/stdout.

A clean process per engine: no other engine's thread pools, allocator state or
JIT caches are in it, and a crash (a segfault in a native library) takes down
only this engine. The parent (core/peers/pool.py) writes one JSON command per
line on stdin; each gets one JSON reply line (``ok`` true, or false with an
``error`` meant for the user and a ``detail`` traceback):

- ``{"cmd": "load", "kind": "engine", "threads": n, "warmup": w, "inputs": npz, ...}``: build or fetch
  the artifacts, load the runner, keep the timing input, make ``w`` untimed calls.
  Replies ``precision`` (what really runs), ``artifacts``, ``cache_hit``, ``prepare_s``, ``load_s``.
- ``{"cmd": "outputs", "batches": npz, "out": npy}``: run every group of a batch file, save the
  stacked outputs (accuracy checks; see core/peers/inputs.py for the file layout).
- ``{"cmd": "time", "round": r, "calls": k, "warmup": u}``: ``u`` untimed calls (the thread pool wakes
  up after the pause in which other engines ran), then ``k`` back-to-back timed calls on the timing input.
  Replies ``round`` (echoed, so the parent can prove the interleaving), ``times_ms``, and
  ``started``/``ended`` on the system-wide monotonic clock.
- ``{"cmd": "exit"}``.

``kind`` names a loader in ``LOADERS`` (``module:function`` returning ``(runner, info)``):
``engine`` runs a peer from core/peers/engines; another runner (a TVM library,
say) is one more loader with its own payload, and the timing protocol is unchanged.
Libraries that print to stdout (NNCF's progress bars) cannot corrupt the protocol:
the worker keeps a private copy of stdout for replies and points fd 1 at stderr.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

LOADERS = {"engine": "core.peers.worker:load_engine", "tvm": "core.tvm.timed_runner:load_tvm"}


def load_engine(message: dict):
    """A peer engine's runner: ``engine_class`` (module:Class), ``model`` (ModelRef dict), ``shape``,
    ``cache`` (root, cap_bytes)."""
    from core.artifact_cache import ArtifactCache
    from core.peers.engines import import_class
    from core.peers.model_ref import ModelRef
    from core.tvm.relax_import import InputShape

    engine = import_class(message["engine_class"])()
    shape = InputShape(**message["shape"])
    cache = ArtifactCache(Path(message["cache"]["root"]), int(message["cache"]["cap_bytes"]))
    start = time.perf_counter()
    prepared = engine.prepare(ModelRef.from_dict(message["model"]), shape, cache)
    prepared_at = time.perf_counter()
    runner = engine.load(prepared, shape, int(message["threads"]))
    return runner, {"artifacts": prepared.artifacts, "cache_hit": prepared.cache_hit,
                    "prepare_s": prepared_at - start, "load_s": time.perf_counter() - prepared_at}


def _set_threads(threads: int) -> None:
    """torch, if a loader imported it (ONNX export), gets the same count as the engine it serves."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


class Session:
    def __init__(self):
        self.runner = None
        self.inputs = None

    def handle(self, message: dict) -> dict:
        command = message.get("cmd")
        if command == "load":
            return self.load(message)
        if command == "outputs":
            return self.outputs(message)
        if command == "time":
            return self.time(message)
        if command == "exit":
            return {}
        raise ValueError(f"unknown command {command!r}")

    def load(self, message: dict) -> dict:
        from core.peers.inputs import groups, load_batches

        module_name, _, attr = LOADERS[message["kind"]].partition(":")
        self.runner, info = getattr(importlib.import_module(module_name), attr)(message)
        _set_threads(int(message["threads"]))
        self.inputs = next(groups(load_batches(Path(message["inputs"]))))
        warmup_ms = [self._timed_call() for _ in range(int(message.get("warmup", 3)))]
        return {**info, "precision": self.runner.precision, "warmup_ms": warmup_ms, "pid": os.getpid()}

    def outputs(self, message: dict) -> dict:
        import numpy as np

        from core.peers.inputs import groups, load_batches

        stacked = np.stack([self.runner.run(inputs) for inputs in groups(load_batches(Path(message["batches"])))])
        np.save(message["out"], stacked)
        return {"groups": int(stacked.shape[0])}

    def time(self, message: dict) -> dict:
        for _ in range(int(message.get("warmup", 0))):
            self.runner.run(self.inputs)
        started = time.monotonic()
        times_ms = [self._timed_call() for _ in range(int(message["calls"]))]
        return {"round": message["round"], "times_ms": times_ms, "started": started, "ended": time.monotonic()}

    def _timed_call(self) -> float:
        start = time.perf_counter()
        self.runner.run(self.inputs)
        return (time.perf_counter() - start) * 1e3


def _error(exc: BaseException) -> str:
    from core.errors import SparseLabError

    if isinstance(exc, SparseLabError):
        return str(exc)
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def serve(lines, reply_to) -> None:
    session = Session()
    for line in lines:
        if not line.strip():
            continue
        message = json.loads(line)
        try:
            reply = {"ok": True, **session.handle(message)}
        except Exception as exc:  # every failure goes back to the parent, which decides what it means
            traceback.print_exc()
            reply = {"ok": False, "error": _error(exc), "detail": traceback.format_exc()}
        reply_to.write(json.dumps(reply) + "\n")
        reply_to.flush()
        if message.get("cmd") == "exit":
            return


def main() -> None:
    reply_to = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    import core  # noqa: F401  (process-wide switches before any library loads)

    serve(sys.stdin, reply_to)
    # Nothing is left to save once "exit" is answered; tearing the engines' libraries down (OpenVINO's plugin,
    # ONNX Runtime, torch) took ~1.5 s per worker and, six workers on 2 cores, ~6 s at the end of every peer run.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
