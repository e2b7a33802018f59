"""A compiled library as one more engine of the peers' timing pool (core/peers/worker.py, kind ``tvm``).

TVM is timed like every peer: in a process of its own, in rounds interleaved with the others,
so PyTorch is never timed in a process where TVM's pool spins (seen: PyTorch at 182 ms with a
huge spread beside TVM, 171 +- 3 ms alone). Inputs are put on the device once, as the
in-process timing did; after the warm-up the calling thread is bound beside TVM's workers
(core/tvm/target.py says why).
"""

from __future__ import annotations

from pathlib import Path

from core.tvm.compile import LIBRARY_FILE, Runner
from core.tvm.target import calling_thread_beside_workers

WARM_CALLS = 3  # the worker's own warm-up; the binding starts after it


class TimedRunner:
    def __init__(self, library: Path, threads: int, precision: str):
        self.precision = precision
        self._runner = Runner(library, threads)
        self._inputs_id, self._args, self._calls, self._placement = None, None, 0, None

    def run(self, inputs: dict):
        if id(inputs) != self._inputs_id:  # the worker's timing input is one dict, reused call after call
            self._inputs_id, self._args = id(inputs), self._runner.to_device(inputs)
        self._calls += 1
        if self._calls == WARM_CALLS + 1 and self._placement is None:
            self._placement = calling_thread_beside_workers()
            self._placement.__enter__()  # for the rest of this process, which only times this library
        out = self._runner.run_device(self._args)
        return (out if hasattr(out, "numpy") else out[0]).numpy()


def load_tvm(message: dict):
    """``library`` (a compiled model's folder), ``precision``; the worker's ``threads``."""
    runner = TimedRunner(Path(message["library"]) / LIBRARY_FILE, int(message["threads"]), message["precision"])
    return runner, {"artifacts": {"library": message["library"]}, "cache_hit": True, "prepare_s": 0.0,
                    "load_s": 0.0}
