"""Measured Linear kernel times: BSR per (layer shape, block) over a sparsity grid, packed dense per shape.

A BSR kernel's stored-block count is symbolic, so one compiled kernel per
(tokens, layer shape, block, schedule) is timed on random block-sparse data at
every grid sparsity, with the weights out of cache as in the model; the sparsities in between are
interpolated linearly in log(time) over log(density), which matched measured
grid points to a few percent (``KernelCurve.interpolation_error`` is that
leave-one-out check, and it goes into the error bar). Tables are cached per
CPU, TVM version and schedule version, so a model whose shapes were seen before
costs no kernel timing at all.
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from core.timing import Timing, measure
from core.tvm.bsr_kernel import BsrKernelShape, default_schedule
from core.tvm.compile import SCHEDULE_VERSION
from core.whatif.cached import cached_json

SPARSITY_GRID = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
REPEATS = 15
COLD_BYTES = 96 * 2**20  # more than this CPU's L3, so every timed call reads weights from memory
MAX_COPIES = 64
TVM_LIBRARIES = ("apache-tvm", "apache-tvm-ffi")


@dataclass(frozen=True)
class KernelCurve:
    """One kernel's median ms at each grid sparsity (ascending) and its relative timing spread
    (the median over the grid of ``relative_spread``)."""

    sparsities: tuple[float, ...]
    ms: tuple[float, ...]
    spread: float

    def at(self, sparsity: float) -> tuple[float, float]:
        """``(ms, relative error)`` at ``sparsity``: timing spread, plus the interpolation error off the grid."""
        x = [math.log(1.0 - s) for s in self.sparsities]
        target = math.log(1.0 - sparsity)
        ms = math.exp(_piecewise_linear(x, [math.log(v) for v in self.ms], target))
        on_grid = any(abs(sparsity - s) < 1e-9 for s in self.sparsities)
        return ms, math.hypot(self.spread, 0.0 if on_grid else self.interpolation_error)

    @property
    def interpolation_error(self) -> float:
        """Median relative error of predicting each interior grid point from its two neighbours."""
        x, y = [math.log(1.0 - s) for s in self.sparsities], [math.log(v) for v in self.ms]
        errors = [abs(math.exp(_piecewise_linear(x[:i] + x[i + 1:], y[:i] + y[i + 1:], x[i]) - y[i]) - 1.0)
                  for i in range(1, len(x) - 1)]
        return statistics.median(errors) if errors else 0.0


def relative_spread(timing: Timing) -> float:
    """(median - min) / median: how far runs scatter, robust to the rare descheduled run that inflates std."""
    return (timing.median_ms - timing.min_ms) / timing.median_ms


def _piecewise_linear(x: list[float], y: list[float], at: float) -> float:
    """Linear interpolation through (x, y) (x descending or ascending), extrapolating the end segments."""
    order = np.argsort(x)
    xs, ys = np.asarray(x)[order], np.asarray(y)[order]
    i = int(np.clip(np.searchsorted(xs, at) - 1, 0, len(xs) - 2))
    return float(ys[i] + (ys[i + 1] - ys[i]) * (at - xs[i]) / (xs[i + 1] - xs[i]))


def _key(tokens: int, layer: tuple[int, int], threads: int) -> dict:
    return {"tokens": tokens, "layer": list(layer), "threads": threads, "repeats": REPEATS,
            "schedule_version": SCHEDULE_VERSION}


def bsr_curve(tokens: int, layer: tuple[int, int], block: tuple[int, int], threads: int,
              cache=None) -> tuple[KernelCurve, bool]:
    """``layer`` is (out, in). ``(curve, cache_hit)``; the default schedule is the one compile_model uses."""
    schedule = default_schedule(BsrKernelShape(tokens, layer[1], layer[0], block))

    def compute() -> dict:
        timings = _time_bsr(tokens, layer, block, schedule, threads)
        return {"ms": [t.median_ms for t in timings],
                "spread": statistics.median(relative_spread(t) for t in timings)}

    inputs = {**_key(tokens, layer, threads), "block": list(block), "schedule": schedule.label,
              "sparsities": list(SPARSITY_GRID)}
    data, hit = cached_json("whatif-bsr-kernel", inputs, compute, libraries=TVM_LIBRARIES, cache=cache,
                            description=f"BSR kernel timings {tokens}x{layer} {block} {threads} threads")
    return KernelCurve(SPARSITY_GRID, monotone(data["ms"]), data["spread"]), hit


def monotone(ms_by_ascending_sparsity) -> tuple[float, ...]:
    """More stored blocks never take less time; where timing noise says otherwise on a busy machine,
    each grid time is raised to the next sparser one's, so no estimate gets faster as density grows."""
    result = list(ms_by_ascending_sparsity)
    for i in range(len(result) - 2, -1, -1):
        result[i] = max(result[i], result[i + 1])
    return tuple(result)


def dense_kernel_ms(tokens: int, layer: tuple[int, int], threads: int, cache=None) -> tuple[tuple[float, float], bool]:
    """``((median ms, relative spread), cache_hit)`` of the packed dense kernel for ``layer`` (out, in)."""
    from core.tvm.dense_kernel import default_schedule as dense_schedule

    schedule = dense_schedule(tokens, layer[0])

    def compute() -> dict:
        timing = _time_dense(tokens, layer, schedule, threads)
        return {"ms": timing.median_ms, "spread": relative_spread(timing)}

    data, hit = cached_json("whatif-dense-kernel", {**_key(tokens, layer, threads), "schedule": schedule.label},
                            compute, libraries=TVM_LIBRARIES, cache=cache,
                            description=f"dense kernel timing {tokens}x{layer} {threads} threads")
    return (data["ms"], data["spread"]), hit


def _compile(func, threads: int):
    import tvm

    from core.tvm.target import host_target, set_runtime_threads

    set_runtime_threads(threads)
    return tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=host_target(threads))["main"]


def _tensors(shapes: list[tuple[int, ...]], seed: int = 0) -> list:
    import tvm

    rng = np.random.default_rng(seed)
    return [tvm.runtime.tensor(rng.standard_normal(shape).astype(np.float32), tvm.cpu()) for shape in shapes]


def _cold_weights(arrays: list[np.ndarray]) -> Iterator[list]:
    """Endless turns over enough device copies of ``arrays`` that each call finds them out of cache, as
    in the model, where 72 layers' weights do not fit in L3 (cache-hot timings came out ~2x too fast)."""
    import tvm

    copies = int(np.clip(math.ceil(COLD_BYTES / sum(a.nbytes for a in arrays)), 1, MAX_COPIES))
    return itertools.cycle([[tvm.runtime.tensor(a, tvm.cpu()) for a in arrays] for _ in range(copies)])


def _time_bsr(tokens: int, layer: tuple[int, int], block: tuple[int, int], schedule, threads: int) -> list[Timing]:
    """One compiled kernel timed at every grid sparsity on random block-sparse weights (values do not matter)."""
    from core.pruning.random_weights import random_block_sparse
    from core.tvm.bsr_format import to_bsr
    from core.tvm.bsr_kernel import bsr_matmul, output_shape

    n, k = layer
    shape = BsrKernelShape(tokens, k, n, block)
    kernel = _compile(bsr_matmul(shape, schedule), threads)
    x, out = _tensors([(k, tokens), output_shape(shape, schedule)])  # the kernels read X^T
    timings = []
    for sparsity in SPARSITY_GRID:
        bsr = to_bsr(random_block_sparse((n, k), sparsity, block, seed=0), block)
        weights = _cold_weights([bsr.data, bsr.indices, bsr.indptr])
        timings.append(measure(lambda: kernel(x, *next(weights), out), threads=threads, repeats=REPEATS))
    return timings


def _time_dense(tokens: int, layer: tuple[int, int], schedule, threads: int) -> Timing:
    from core.tvm.dense_kernel import dense_matmul, pack_weight

    n, k = layer
    kernel = _compile(dense_matmul(tokens, k, n, schedule), threads)
    x, out = _tensors([(tokens, k), (tokens, n)])
    weight = np.random.default_rng(1).standard_normal((n, k)).astype(np.float32)
    weights = _cold_weights([pack_weight(weight, schedule.lanes)])
    return measure(lambda: kernel(x, *next(weights), out), threads=threads, repeats=REPEATS)
