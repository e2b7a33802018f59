"""The host target and where the calling thread runs while TVM code is timed."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from core.environment import CpuInfo
from core.tvm.target import (
    calling_thread_beside_workers,
    host_target,
    llvm_features,
    measure_tvm,
    set_runtime_threads,
    target_description,
)

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                                reason="needs Linux thread affinity and at least 2 CPUs")


def test_target_keeps_the_detected_cpu_and_thread_count():
    target = host_target(2)
    assert str(target.attrs["mcpu"]) == target_description(2)["mcpu"]
    assert int(target.attrs["num-cores"]) == 2


def test_target_carries_the_features_the_cpu_reports():
    """A VM's CPU model can map to an LLVM CPU without AMX (model 167: "rocketlake") while the CPU has it."""
    target = host_target(2)
    assert [str(f) for f in target.attrs.get("mattr", [])] == llvm_features()
    assert target_description(2).get("mattr", []) == llvm_features()


def test_llvm_features_follow_the_flags(monkeypatch):
    import core.tvm.target as module

    monkeypatch.setattr(module, "cpu_info", lambda: CpuInfo("x", "GenuineIntel", 6, 2,
                                                            ("amx_bf16", "amx_int8", "avx2", "avx512_vnni")))
    assert llvm_features() == ["+amx-tile", "+amx-int8", "+amx-bf16", "+avx512vnni"]
    monkeypatch.setattr(module, "cpu_info", lambda: CpuInfo("x", "AuthenticAMD", 25, 2, ("avx2", "fma")))
    assert llvm_features() == []
    assert "mattr" not in target_description(2)


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


def _cpus_bound_by_other_threads() -> set[int]:
    """CPUs that other threads of this process are pinned to one each (as TVM pins its workers)."""
    me, bound = threading.get_native_id(), set()
    for tid in map(int, os.listdir("/proc/self/task")):
        try:
            cpus = os.sched_getaffinity(tid)
        except OSError:
            continue
        if tid != me and len(cpus) == 1:
            bound |= cpus
    return bound


def _time_a_parallel_kernel(threads_before: list[int]) -> dict:
    """Run in a fresh process (TVM's pool is process-wide): after pools of ``threads_before``, time a
    parallel kernel on 2 threads, noting at every call where the calling thread and TVM's workers may run."""
    import tvm
    from tvm import s_tir, te

    n = 256
    a = te.placeholder((n, n), name="a")
    b = te.compute((n, n), lambda i, j: a[i, j] * 2.0, name="b")
    schedule = s_tir.Schedule(te.create_prim_func([a, b]))
    rows, _ = schedule.get_loops(schedule.get_sblock("b"))
    schedule.parallel(rows)  # a parallel loop, so the timed calls really run on TVM's thread pool
    kernel = tvm.compile(schedule.mod, target=host_target(2))["main"]
    x = tvm.runtime.tensor(np.ones((n, n), np.float32))
    y = tvm.runtime.tensor(np.zeros((n, n), np.float32))
    for threads in threads_before:
        set_runtime_threads(threads)
        kernel(x, y)
    allowed = os.sched_getaffinity(0)
    seen = []  # per call: (the calling thread's CPUs, the CPUs TVM's workers are pinned to)

    def timed():
        seen.append((sorted(os.sched_getaffinity(0)), sorted(_cpus_bound_by_other_threads())))
        kernel(x, y)

    timing = measure_tvm(timed, threads=2, repeats=3, warmup=1)
    return {"repeats": timing.repeats, "threads": timing.threads, "median_ms": timing.median_ms,
            "doubled": bool((y.numpy() == 2.0).all()), "seen": seen, "allowed": sorted(allowed),
            "allowed_after": sorted(os.sched_getaffinity(0))}


def _in_fresh_process(threads_before: list[int]) -> dict:
    code = ("import json, sys; from tests.test_tvm_target import _time_a_parallel_kernel as f; "
            "print(json.dumps(f(json.loads(sys.argv[1]))))")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(threads_before)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def _assert_timed_off_the_worker_cpus(result: dict) -> None:
    assert result["repeats"] == 3 and result["threads"] == 2 and result["median_ms"] > 0 and result["doubled"]
    assert len(result["seen"]) == 1 + 3
    allowed = set(result["allowed"])
    for mine, workers in result["seen"][1:]:  # the timed calls, after the warm-up started the pool
        assert workers, f"no TVM worker pinned to a CPU while timing: {result['seen']}"
        assert mine and set(mine) <= allowed and not set(mine) & set(workers), result["seen"]
    assert result["allowed_after"] == result["allowed"]


@pytest.mark.slow  # compiles with TVM
def test_measure_tvm_times_a_kernel_on_two_threads_off_the_worker_cpu():
    _assert_timed_off_the_worker_cpus(_in_fresh_process([]))


@pytest.mark.slow  # compiles with TVM
def test_measure_tvm_on_two_threads_after_a_one_thread_run():
    _assert_timed_off_the_worker_cpus(_in_fresh_process([1]))
