"""Job functions the job-runner tests start in real worker processes."""

import os
import time

from core.errors import SparseLabError


def count(params, progress):
    for i in range(params["n"]):
        progress((i + 1) / params["n"], f"step {i + 1}")
        time.sleep(params.get("delay", 0.0))
    return {"counted": params["n"]}


def refuse(params, progress):
    raise SparseLabError("sparsity must be below 1")


def crash(params, progress):
    return 1 / 0


def timed_phase(params, progress):
    """Holds the CPU for ``seconds`` and returns when it started and ended (wall clock)."""
    start = time.time()
    while time.time() - start < params.get("seconds", 0.5):
        pass
    return {"start": start, "end": time.time(), "pid": os.getpid()}


def record_a_run(params, progress):
    """Adds one run to the run store this process sees, and names its id in the result."""
    from core.run_store import RunRecord, default_store

    run_id = default_store().add(RunRecord(kind="test", model="m", latency_ms=1.0))
    return {"run_id": run_id}
