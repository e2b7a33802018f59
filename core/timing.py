"""The one way every latency in SparseLab is measured.

Warm-up runs first (lazy init, caches, thread pools), then N timed repeats with
the thread count set explicitly for every runtime that honours it; the result
keeps the full distribution summary and the thread count it was measured with.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

_THREAD_ENV_VARS = ("TVM_NUM_THREADS", "OMP_NUM_THREADS")


QUIET_SHARE = 4  # the quiet runs are the fastest quarter
SETTLE_S = 3.0  # idle time between a fresh build and its first timed run


def settle(seconds: float = SETTLE_S) -> None:
    """Let the machine finish what a build left behind before anything is timed: flush dirty pages
    (``os.sync``), then stay idle ``seconds`` while the kernel reclaims and compacts the memory the compile
    freed. A Compile job timed in the job queue right after its build ran 1.1-1.8x slower than the same job
    timed alone right after with the build cached (benchmarks/job_queue.py, MiniLM)."""
    os.sync()
    time.sleep(seconds)


def quiet_indices(totals_ms: list[float]) -> list[int]:
    """Positions of the fastest quarter of runs (at least one).

    On a shared host, spells of neighbours' load slow every part of a run together;
    the jitter of each part is independent. The median over the quiet runs drops the
    spells and keeps the jitter: a sum of per-part minimums would not (each part's
    luckiest call, added up, is faster than any real run)."""
    order = sorted(range(len(totals_ms)), key=totals_ms.__getitem__)
    return order[:max(1, len(order) // QUIET_SHARE)]


@dataclass(frozen=True)
class Timing:
    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    quiet_ms: float  # median of the fastest quarter (``quiet_indices``)
    repeats: int
    warmup: int
    threads: int
    p10_ms: float = 0.0  # the spread charts draw: 10th to 90th percentile of the timed runs, never below zero
    p90_ms: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def of(cls, samples_ms: list[float], *, warmup: int, threads: int, quiet: list[int] | None = None) -> Timing:
        """The summary of timed samples (ms); ``repeats`` is their count. ``quiet``: positions of the quiet
        runs when something else decides them (a whole round of calls), else the fastest quarter of these."""
        quiet = quiet_indices(samples_ms) if quiet is None else quiet
        return cls(median_ms=statistics.median(samples_ms), mean_ms=statistics.fmean(samples_ms),
                   std_ms=statistics.stdev(samples_ms) if len(samples_ms) > 1 else 0.0, min_ms=min(samples_ms),
                   quiet_ms=statistics.median(samples_ms[i] for i in quiet),
                   repeats=len(samples_ms), warmup=warmup, threads=threads,
                   p10_ms=percentile(samples_ms, 10), p90_ms=percentile(samples_ms, 90))


def percentile(samples: list[float], q: float) -> float:
    """The ``q``-th percentile (linear interpolation between order statistics, numpy's default)."""
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@contextmanager
def thread_count(threads: int) -> Iterator[None]:
    """Run a block with ``threads`` threads for torch, TVM and OpenMP; restore after."""
    if threads < 1:
        raise ValueError("threads must be at least 1")
    saved_env = {name: os.environ.get(name) for name in _THREAD_ENV_VARS}
    torch = sys.modules.get("torch")
    saved_torch = torch.get_num_threads() if torch else None
    for name in _THREAD_ENV_VARS:
        os.environ[name] = str(threads)
    if torch:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if torch:
            torch.set_num_threads(saved_torch)


def measure(fn: Callable[[], object], *, threads: int, repeats: int = 20, warmup: int = 3,
            clock: Callable[[], float] = time.perf_counter,
            placement: Callable[[], AbstractContextManager] = nullcontext, pause_s: float = 0.0) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed ones inside ``placement()`` (a
    runtime's thread placement, entered once the warm-up has started its thread pool).

    ``pause_s`` between timed calls spreads them over time: a shared host's slow spells last
    seconds, and back-to-back runs would all fall into one."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    samples = []
    with thread_count(threads):
        for _ in range(warmup):
            fn()
        with placement():
            for _ in range(repeats):
                if pause_s and samples:
                    time.sleep(pause_s)
                start = clock()
                fn()
                samples.append((clock() - start) * 1e3)
    return Timing.of(samples, warmup=warmup, threads=threads)
