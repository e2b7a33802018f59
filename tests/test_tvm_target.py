"""The host target and where the calling thread runs while TVM code is timed."""

import os
import threading

import numpy as np
import pytest

from core.tvm.target import (
    calling_thread_beside_workers,
    host_target,
    measure_tvm,
    set_runtime_threads,
    target_description,
)

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                                reason="needs Linux thread affinity and at least 2 CPUs")


def test_target_keeps_the_detected_cpu_and_thread_count():
    target = host_target(2)
    assert str(target.attrs["mcpu"]) == target_description(2)["mcpu"]
    assert int(target.attrs["num-cores"]) == 2


def _thread_bound_to(cpu: int):
    """A live thread bound to ``cpu``, as TVM binds a worker; stop it with the returned event."""
    ready, stop = threading.Event(), threading.Event()

    def run():
        os.sched_setaffinity(0, {cpu})
        ready.set()
        stop.wait()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait()
    return thread, stop


def test_calling_thread_leaves_the_bound_threads_cpus_and_gets_them_back():
    allowed = os.sched_getaffinity(0)
    worker_cpu = max(allowed)
    thread, stop = _thread_bound_to(worker_cpu)
    try:
        with calling_thread_beside_workers():
            inside = os.sched_getaffinity(0)
    finally:
        stop.set()
        thread.join()
    assert inside and worker_cpu not in inside and inside <= allowed
    assert os.sched_getaffinity(0) == allowed


def test_reconfiguring_the_pool_leaves_the_calling_thread_free():
    allowed = os.sched_getaffinity(0)
    for threads in (1, 2):
        set_runtime_threads(threads)
        assert os.sched_getaffinity(0) == allowed  # TVM alone binds it to CPU 0 for one thread


def test_measure_tvm_times_a_kernel_on_two_threads_off_the_worker_cpu():
    import tvm
    from tvm import te

    n = 256
    a = te.placeholder((n, n), name="a")
    b = te.compute((n, n), lambda i, j: a[i, j] * 2.0, name="b")
    func = te.create_prim_func([a, b])
    kernel = tvm.compile(tvm.IRModule({"main": func}), target=host_target(2))["main"]
    x = tvm.runtime.tensor(np.ones((n, n), np.float32))
    y = tvm.runtime.tensor(np.zeros((n, n), np.float32))
    allowed = os.sched_getaffinity(0)
    timing = measure_tvm(lambda: kernel(x, y), threads=2, repeats=3, warmup=1)
    assert timing.repeats == 3 and timing.threads == 2 and timing.median_ms > 0
    np.testing.assert_array_equal(y.numpy(), 2.0)
    assert os.sched_getaffinity(0) == allowed
