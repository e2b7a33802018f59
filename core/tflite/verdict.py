"""Why a sparse .tflite is (or is not) faster here, worked out from the measured numbers.

XNNPACK, TFLite's default CPU delegate, has a sparse inference path (SpMM for
the 1x1 convolutions of a MobileNet-like subgraph) but switches it off on x86
CPUs with AVX: it densifies the weights when the model loads and runs its dense
kernels. On such a CPU a sparse file buys size (download, storage, memory map),
not speed; the verdict says so with this run's own sizes and latencies.

Speed is compared on each file's fastest timed run (the one least disturbed by
other work on a shared machine; medians drift with the load while the float and
the sparse file are timed one after the other), and "faster" must hold at every
thread count, so one lucky or unlucky series cannot decide it.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass

from core.environment import CpuInfo, cpu_info

# Below this float/sparse latency ratio the difference is within run-to-run noise.
SPEEDUP_THRESHOLD = 1.10


@dataclass(frozen=True)
class SparseVerdict:
    prune: str
    float_bytes: int
    sparse_bytes: int
    size_saving: float
    float_best_ms: dict[int, float]
    sparse_best_ms: dict[int, float]
    speedups: dict[int, float]
    faster: bool
    explanation: str

    def as_dict(self) -> dict:
        return asdict(self)


def _x86_with_avx(cpu: CpuInfo, machine: str) -> bool:
    return machine.lower() in ("x86_64", "amd64", "i686", "x86") and cpu.has("avx")


def _duration(ms: float) -> str:
    return f"{ms * 1000:.1f} µs" if ms < 1 else f"{ms:.2f} ms"


def sparse_verdict(prune: str, method: str, float_bytes: int, sparse_bytes: int,
                   float_best_ms: dict[int, float], sparse_best_ms: dict[int, float],
                   cpu: CpuInfo | None = None, machine: str | None = None) -> SparseVerdict:
    """Compare the float and the sparse export of one pruned model, thread count by thread count."""
    cpu = cpu or cpu_info()
    machine = machine or platform.machine()
    speedups = {threads: float_best_ms[threads] / sparse_best_ms[threads] for threads in sorted(float_best_ms)}
    faster = min(speedups.values()) >= SPEEDUP_THRESHOLD
    saving = 1 - sparse_bytes / float_bytes
    timings = "fastest runs, sparse vs float: " + "; ".join(
        f"{threads} thread{'s' * (threads > 1)} {_duration(sparse_best_ms[threads])} vs "
        f"{_duration(float_best_ms[threads])} ({speedup:.2f}x)" for threads, speedup in speedups.items())
    size = (f"The sparse file is {abs(saving):.0%} {'smaller' if saving >= 0 else 'larger'} than the float one "
            f"({sparse_bytes / 1024:.0f} KB vs {float_bytes / 1024:.0f} KB)")
    if faster:
        explanation = f"{size} and faster: {timings}."
    else:
        if _x86_with_avx(cpu, machine):
            reason = (f"XNNPACK switches its sparse inference path off on x86 CPUs with AVX (this one: {cpu.model}, "
                      f"{', '.join(cpu.flags)}), so it densifies the weights at load time and runs dense kernels")
        else:
            reason = "XNNPACK's sparse kernels did not beat its dense ones for this model on this CPU"
        if method != "xnnpack":
            reason += ("; and even where that path is on (ARM phones), it only covers the 1x1 convolutions of a "
                       "MobileNet-like model pruned with PruneForLatencyOnXNNPack")
        benefit = ("What sparsity buys this model here is size." if saving > 0 else
                   "Here the compressed format buys nothing either: too few weights are zero for its index to pay off.")
        explanation = f"{size}, but no faster ({timings}): {reason}. {benefit}"
    return SparseVerdict(prune=prune, float_bytes=float_bytes, sparse_bytes=sparse_bytes, size_saving=saving,
                         float_best_ms=float_best_ms, sparse_best_ms=sparse_best_ms, speedups=speedups,
                         faster=faster, explanation=explanation)
