"""The TVM target for this host and the runtime's thread pool.

Without ``mcpu`` LLVM emits baseline x86-64 (no AVX2/FMA): kernels run ~2.5x
slower. TVM's runtime sizes its thread pool once, from TVM_NUM_THREADS, so the
thread count is set explicitly before every run, never inherited. Timings of
TVM code go through ``measure_tvm``, which keeps the calling thread off the
CPUs TVM binds its workers to.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from core.environment import cpu_info, llvm_mcpu, usable_cores
from core.timing import Timing, measure

# How long idle TVM workers spin before sleeping; read when the pool starts. The
# default spins long enough to starve PyTorch's threads on the same cores (its
# side-by-side timings then mean nothing); 0 makes every one of BERT's ~340
# parallel kernels pay a wake-up. 20000 keeps workers hot between kernels only.
os.environ.setdefault("TVM_THREAD_POOL_SPIN_COUNT", "20000")


# Lets LLVM reorder float sums, so row reductions (layer norm) vectorise:
# layer norm 5.1 -> 2.8 ms per BERT-base inference; outputs stay within 1e-5.
FAST_MATH = {"fast-math-reassoc": True, "fast-math-contract": True}


# LLVM's names of the CPU features the kernels use, by the /proc/cpuinfo flag that says the CPU has them. They go
# to the target as ``mattr`` beside the detected ``mcpu``, because a VM can report a CPU model whose LLVM name lacks
# them: a Xeon VM with AMX and AVX512-BF16 reported model 167, which LLVM calls "rocketlake" (no AMX), and every
# AMX kernel then stopped the process with "LLVM ERROR: Cannot select: intrinsic %llvm.x86.tilestored64".
LLVM_FEATURES = {"amx_int8": ("+amx-tile", "+amx-int8"), "amx_bf16": ("+amx-tile", "+amx-bf16"),
                 "avx512_vnni": ("+avx512vnni",), "avx_vnni": ("+avxvnni",), "avx512_bf16": ("+avx512bf16",)}


def llvm_features() -> list[str]:
    """The ``mattr`` of this host's target: every LLVM feature of ``LLVM_FEATURES`` whose flag the CPU reports."""
    flags = cpu_info().flags
    return list(dict.fromkeys(feature for flag, features in LLVM_FEATURES.items() if flag in flags
                              for feature in features))


def _llvm() -> dict:
    features = llvm_features()
    return {"kind": "llvm", "mcpu": llvm_mcpu(), **({"mattr": features} if features else {})}


def host_target(threads: int):
    """An llvm target for this CPU (detected mcpu, and the features it reports) with an explicit core count."""
    import tvm

    if threads < 1:
        raise ValueError("threads must be at least 1")
    return tvm.target.Target({**_llvm(), "num-cores": threads, **FAST_MATH})


def target_description(threads: int) -> dict:
    """What the compiled code depends on, for cache keys and reports."""
    return {**_llvm(), "threads": threads, **FAST_MATH}


def set_runtime_threads(threads: int) -> None:
    """Resize TVM's thread pool now (env var alone is read only when the pool starts).

    Reconfiguring also binds the calling thread (to CPU 0 for a 1-thread pool); its CPUs are
    put back, or threads it starts later, such as torch's pool, are born bound to one CPU."""
    import tvm

    # The pool's worker count is fixed when it first starts, from TVM_NUM_THREADS: started for 1 thread, a
    # later 2-thread request got no worker and ran on 1 thread, unplaced. Start it for every usable core
    # (or more, if asked) and let the configuration choose how many of them run.
    os.environ["TVM_NUM_THREADS"] = str(max(threads, usable_cores(), int(os.environ.get("TVM_NUM_THREADS") or 0)))
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    tvm.get_global_func("runtime.config_threadpool")(1, threads)
    if cpus is not None:
        os.sched_setaffinity(0, cpus)


def _cpus_of_bound_threads() -> set[int]:
    """CPUs that other threads of this process are bound to one by one (TVM binds each worker to one CPU)."""
    bound, me = set(), threading.get_native_id()
    for tid in map(int, os.listdir("/proc/self/task")):
        try:
            cpus = os.sched_getaffinity(tid)
        except OSError:  # the thread ended meanwhile
            continue
        if tid != me and len(cpus) == 1:
            bound |= cpus
    return bound


@contextmanager
def calling_thread_beside_workers() -> Iterator[None]:
    """Bind the calling thread to the CPUs no TVM worker holds; restore its CPUs after.

    TVM binds worker i to CPU i and leaves the calling thread, which runs part 0
    of every parallel kernel, free. When Linux wakes it on a worker's CPU the two
    share one core and every kernel waits: a 2-thread dense kernel measured
    0.69 ms or 1.32 ms from one batch to the next on this 2-core machine (never
    1.32 with this binding). Linux only (elsewhere a no-op)."""
    if not hasattr(os, "sched_setaffinity") or not os.path.isdir("/proc/self/task"):
        yield
        return
    allowed = os.sched_getaffinity(0)
    free = allowed - _cpus_of_bound_threads()
    if not free or free == allowed:
        yield
        return
    os.sched_setaffinity(0, free)
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


def measure_tvm(fn: Callable[[], object], *, threads: int, **kwargs) -> Timing:
    """``core.timing.measure`` for code on TVM's thread pool, with the calling thread beside the workers
    (bound after the warm-up and after torch has sized its pool, so no new thread inherits the binding)."""
    set_runtime_threads(threads)
    return measure(fn, threads=threads, placement=calling_thread_beside_workers, **kwargs)
