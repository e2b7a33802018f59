"""A fixed reference kernel, timed beside every measurement, so a table measured at one moment can be read at another.

This host's speed drifts through the hour (its L3 and memory bandwidth are
shared with other machines: the same library measured 15.1 and 21.6 ms an hour
apart). An estimate adds up tables measured at different moments and is checked
at yet another, so every measurement carries the time of one fixed kernel taken
in the same rounds (``reference_ms``), and an estimate scales each cached part
by ``reference now / reference then`` (``drift_factor``).

The reference has to slow down the way the model does. A compute-bound probe
does not (it stayed at 0.70 ms while a library went from 31 to 58 ms), so the
reference streams its weights from memory like the model: the fp32 BSR 16x1
kernel of a 3072x768 layer at sparsity 0.8 (128 tokens, the schedule
compile_model uses; 1.9 MB of BSR data) after the caches are evicted and an
untimed wake-up call on other weights. It is short on purpose (~0.8 ms at 2
threads): with ~10 runnable processes on the 2 cores, longer samples are
preempted and measure the CPU share, not the host's speed. Measured (6 times 20
samples each, 2 threads, load 9): one call per sample, quiet medians
0.77-0.84 ms (CV 2.5%); four calls on different weights per sample, 10-16 ms
(CV 15%, 3-4 ms per call: preempted).
The library is compiled once per CPU and thread count and kept in the artifact
cache (a warm estimate loads it; compiling it takes ~1 s).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

from core.timing import quiet_indices

TOKENS = 128
LAYER = (3072, 768)  # (out, in)
BLOCK = (16, 1)
SPARSITY = 0.8
COPIES = 1  # timed per sample (plus one untimed wake-up call on its own weights)
EVICT_BYTES = 64 * 2**20
NOW_REPEATS = 20
NOW_PAUSE_S = 0.05
LIBRARY_FILE = "reference.so"
VERSION = 1


@dataclass(frozen=True)
class ReferenceTime:
    """The reference's quiet time over a measurement (``ms``), and how many samples it rests on."""

    ms: float
    samples: int
    median_ms: float

    def as_dict(self) -> dict:
        return {"reference_ms": self.ms, "reference_samples": self.samples, "reference_median_ms": self.median_ms}


def summarise(samples_ms: list[float], quiet: list[int] | None = None) -> ReferenceTime:
    """Median of the samples at ``quiet`` (the quiet runs of what it was timed beside), else of their own
    quiet quarter."""
    quiet = quiet_indices(samples_ms) if quiet is None else quiet
    return ReferenceTime(statistics.median(samples_ms[i] for i in quiet), len(samples_ms),
                         statistics.median(samples_ms))


def drift_factor(now_ms: float | None, then_ms: float | None) -> float:
    """How much slower the host is now than when a part was measured (1 when either is unknown)."""
    if not now_ms or not then_ms:
        return 1.0
    return now_ms / then_ms


class ReferenceKernel:
    """The compiled reference and its inputs; ``sample()`` evicts the caches and times one sample (ms)."""

    def __init__(self, threads: int, cache=None):
        import tvm

        from core.pruning.random_weights import random_block_sparse
        from core.tvm.bsr_format import to_bsr
        from core.tvm.bsr_kernel import BsrKernelShape, default_schedule, output_shape

        self.threads = threads
        shape = BsrKernelShape(TOKENS, LAYER[1], LAYER[0], BLOCK)
        schedule = default_schedule(shape)
        self.kernel = _library(threads, cache)
        device = tvm.cpu()
        rng = np.random.default_rng(0)
        self.x = tvm.runtime.tensor(rng.standard_normal((LAYER[1], TOKENS)).astype(np.float32), device)
        self.out = tvm.runtime.tensor(np.zeros(output_shape(shape, schedule), np.float32), device)
        self.weights = []
        for seed in range(COPIES + 1):
            bsr = to_bsr(random_block_sparse(LAYER, SPARSITY, BLOCK, seed=seed), BLOCK)
            self.weights.append([tvm.runtime.tensor(np.ascontiguousarray(a), device)
                                 for a in (bsr.data, bsr.indices, bsr.indptr)])
        self.evict = np.zeros(EVICT_BYTES // 8)

    def sample(self) -> float:
        np.add(self.evict, 1.0, out=self.evict)
        self.kernel(self.x, *self.weights[0], self.out)  # wakes the thread pool, touching its own weights only
        start = time.perf_counter()
        for weights in self.weights[1:]:
            self.kernel(self.x, *weights, self.out)
        return (time.perf_counter() - start) * 1e3


def _library(threads: int, cache=None):
    """The reference kernel's compiled function: built once per CPU/threads into the artifact cache, then loaded."""
    import tvm

    from core.artifact_cache import ArtifactSpec, default_cache
    from core.tvm.bsr_kernel import BsrKernelShape, bsr_matmul, default_schedule
    from core.tvm.compile import SCHEDULE_VERSION
    from core.tvm.target import host_target, set_runtime_threads, target_description

    set_runtime_threads(threads)
    shape = BsrKernelShape(TOKENS, LAYER[1], LAYER[0], BLOCK)
    schedule = default_schedule(shape)

    def build(directory):
        func = bsr_matmul(shape, schedule)
        module = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
        tvm.compile(module, target=host_target(threads)).export_library(str(directory / LIBRARY_FILE))

    spec = ArtifactSpec(kind="whatif-reference-kernel", libraries=("apache-tvm", "apache-tvm-ffi"), cpu_specific=True,
                        inputs={"tokens": TOKENS, "layer": list(LAYER), "block": list(BLOCK),
                                "schedule": schedule.label, "schedule_version": SCHEDULE_VERSION,
                                "target": target_description(threads), "version": VERSION})
    directory, _ = (cache or default_cache()).get_or_build(spec, build, description="what-if reference kernel")
    return tvm.runtime.load_module(str(directory / LIBRARY_FILE))["main"]


_KERNELS: dict[tuple[int, str], ReferenceKernel] = {}


def reference_kernel(threads: int, cache=None) -> ReferenceKernel:
    """One ReferenceKernel per thread count and cache in this process."""
    key = (threads, str(getattr(cache, "root", "")))
    if key not in _KERNELS:
        _KERNELS[key] = ReferenceKernel(threads, cache)
    return _KERNELS[key]


def reference_now(threads: int, cache=None, repeats: int = NOW_REPEATS) -> ReferenceTime:
    """The reference right now: ``repeats`` samples ``NOW_PAUSE_S`` apart, the median of their quiet quarter."""
    from core.tvm.target import measure_tvm

    kernel = reference_kernel(threads, cache)
    samples: list[float] = []
    measure_tvm(lambda: samples.append(kernel.sample()), threads=threads, repeats=repeats, warmup=1,
                pause_s=NOW_PAUSE_S)
    return summarise(samples[-repeats:])
