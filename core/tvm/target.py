"""The TVM target for this host and the runtime's thread pool.

Without ``mcpu`` LLVM emits baseline x86-64 (no AVX2/FMA): kernels run ~2.5x
slower. TVM's runtime sizes its thread pool once, from TVM_NUM_THREADS, so the
thread count is set explicitly before every run, never inherited.
"""

from __future__ import annotations

import os

from core.environment import llvm_mcpu

# How long idle TVM workers spin before sleeping; read when the pool starts. The
# default spins long enough to starve PyTorch's threads on the same cores (its
# side-by-side timings then mean nothing); 0 makes every one of BERT's ~340
# parallel kernels pay a wake-up. 20000 keeps workers hot between kernels only.
os.environ.setdefault("TVM_THREAD_POOL_SPIN_COUNT", "20000")


# Lets LLVM reorder float sums, so row reductions (layer norm) vectorise:
# layer norm 5.1 -> 2.8 ms per BERT-base inference; outputs stay within 1e-5.
FAST_MATH = {"fast-math-reassoc": True, "fast-math-contract": True}


def host_target(threads: int):
    """An llvm target for this CPU (detected mcpu) with an explicit core count."""
    import tvm

    if threads < 1:
        raise ValueError("threads must be at least 1")
    return tvm.target.Target({"kind": "llvm", "mcpu": llvm_mcpu(), "num-cores": threads, **FAST_MATH})


def target_description(threads: int) -> dict:
    """What the compiled code depends on, for cache keys and reports."""
    return {"kind": "llvm", "mcpu": llvm_mcpu(), "threads": threads, **FAST_MATH}


def set_runtime_threads(threads: int) -> None:
    """Resize TVM's thread pool now (env var alone is read only when the pool starts)."""
    import tvm

    os.environ["TVM_NUM_THREADS"] = str(threads)
    tvm.get_global_func("runtime.config_threadpool")(1, threads)
