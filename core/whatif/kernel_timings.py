"""Measured Linear kernel times: BSR per (layer shape, block) over a sparsity grid, packed dense per shape.

A BSR kernel's stored-block count is symbolic, so one compiled kernel per
(tokens, layer shape, block, schedule) is timed on random block-sparse data at
every grid sparsity; the sparsities in between are interpolated linearly in
log(time) over log(density) (``KernelCurve.interpolation_error`` is that
leave-one-out check, and it goes into the error bar).

How they are timed matters more than anything else here (docs/whatif.md):
every kernel a request lacks is timed together, round-robin. Each round first
evicts the caches (weights come from memory, as in the model, where 72 layers'
weights do not fit in L3), then calls every (kernel, sparsity) once, then
pauses. The rounds span seconds; the host's neighbours (other machines sharing
its L3 and memory) slow whole rounds, so a kernel's time is its median over
the quiet rounds (``core.timing.quiet_indices``: the fastest quarter by round
total); the spread of all rounds goes into the error bar.
Tables are cached per CPU, TVM version and schedule version, so a model whose
shapes were seen before costs no kernel timing at all.

Each round also times the fixed reference kernel (``core.whatif.reference``);
every table stores the reference's time over the same quiet rounds
(``reference_ms``), so an estimate made later scales the table by how much the
host has drifted since.

``precision="int8"`` tables time the int8 kernels compile_model uses with
``RewriteOptions(precision="int8")``: the VNNI BSR kernel (blocks of 4 input
columns) over the same grid, the VNNI dense kernel, and, as a table of its own
per (tokens, in features), the activation quantisation kernel every int8 Linear
input goes through (``QuantizeTable``).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.jobs import NO_PROGRESS, Progress
from core.timing import Timing, quiet_indices
from core.tvm.bsr_kernel import BsrKernelShape, default_schedule
from core.tvm.compile import SCHEDULE_VERSION
from core.tvm.target import measure_tvm
from core.whatif.cached import cached_json, is_cached
from core.whatif.reference import reference_kernel, summarise

SPARSITY_GRID = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
ROUNDS = 20
PAUSE_S = 0.15  # between rounds
EVICT_BYTES = 64 * 2**20  # written before every round: more than this CPU's L3
TVM_LIBRARIES = ("apache-tvm", "apache-tvm-ffi")


@dataclass(frozen=True)
class KernelCurve:
    """One kernel's quiet-round ms at each grid sparsity (ascending) and its relative timing spread
    (the median over the grid of ``relative_spread``); ``reference_ms``: the reference kernel over the
    same quiet rounds (None for tables timed without it)."""

    sparsities: tuple[float, ...]
    ms: tuple[float, ...]
    spread: float
    reference_ms: float | None = None

    def scaled(self, factor: float) -> KernelCurve:
        """The curve with every time multiplied by ``factor`` (host drift since it was measured)."""
        return KernelCurve(self.sparsities, tuple(v * factor for v in self.ms), self.spread, self.reference_ms)

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


def _int8_key() -> dict:
    from core.tvm.amx_bsr_kernel import use_amx
    from core.tvm.compile import INT8_VERSION
    from core.tvm.int8_dense_kernel import use_vnni

    return {"precision": "int8", "int8_vnni": use_vnni(), "int8_amx": use_amx(), "int8_version": INT8_VERSION}


@dataclass(frozen=True)
class KernelTable:
    """What one cached table times: the BSR kernel of ``layer`` (out, in) with ``block`` over the sparsity
    grid, or with ``block=None`` the packed dense kernel (the schedules compile_model uses), in ``precision``."""

    tokens: int
    layer: tuple[int, int]
    block: tuple[int, int] | None
    threads: int
    precision: str = "fp32"

    @property
    def padded_tokens(self) -> int:
        from core.tvm import quantize

        return quantize.padded_tokens(self.tokens)

    @property
    def schedule(self):
        from core.tvm.dense_kernel import default_schedule as dense_schedule

        if self.precision == "int8":
            from core.tvm import amx_bsr_kernel, int8_bsr_kernel, int8_dense_kernel

            if self.block is None:
                if amx_bsr_kernel.dense_applies(self.layer[1], self.layer[0]):  # as core.tvm.bsr_rewrite does
                    return amx_bsr_kernel.dense_schedule(self.padded_tokens)
                return int8_dense_kernel.default_schedule(self.padded_tokens, self.layer[0])

            if amx_bsr_kernel.applies(self.block):  # as the compiled model does (core.tvm.bsr_rewrite)
                return amx_bsr_kernel.default_schedule(self.padded_tokens)
            return int8_bsr_kernel.default_schedule(
                int8_bsr_kernel.Int8BsrShape(self.padded_tokens, self.layer[1], self.layer[0], self.block))
        if self.block is None:
            return dense_schedule(self.tokens, self.layer[0])
        return default_schedule(BsrKernelShape(self.tokens, self.layer[1], self.layer[0], self.block))

    def cache_args(self) -> tuple[str, dict]:
        inputs = {"tokens": self.tokens, "layer": list(self.layer), "threads": self.threads, "rounds": ROUNDS,
                  "schedule_version": SCHEDULE_VERSION, "schedule": self.schedule.label,
                  **(_int8_key() if self.precision == "int8" else {})}
        if self.block is None:
            return "whatif-dense-kernel", inputs
        return "whatif-bsr-kernel", {**inputs, "block": list(self.block), "sparsities": list(SPARSITY_GRID)}

    def __str__(self) -> str:
        kernel = "dense" if self.block is None else f"BSR {self.block[0]}x{self.block[1]}"
        precision = "" if self.precision == "fp32" else f"{self.precision} "
        return f"{precision}{kernel} kernel {self.layer[0]}x{self.layer[1]}"

    def calls(self) -> list[_Call]:
        """The compiled kernel, one call per timed point (grid sparsities, or the one dense weight)."""
        if self.precision == "int8":
            if self.block is None:
                return [_int8_dense_call(self.padded_tokens, self.layer, self.schedule, self.threads)]
            return _int8_bsr_calls(self.padded_tokens, self.layer, self.block, self.schedule, self.threads)
        if self.block is None:
            return [_dense_call(self.tokens, self.layer, self.schedule, self.threads)]
        return _bsr_calls(self.tokens, self.layer, self.block, self.schedule, self.threads)

    def summary(self, timings: list[Timing]) -> dict:
        ms = [t.quiet_ms for t in timings]
        return {"ms": ms[0] if self.block is None else ms,
                "spread": statistics.median(relative_spread(t) for t in timings)}


@dataclass(frozen=True)
class QuantizeTable:
    """The int8 activation quantisation kernel (absmax + pack to u8 ``XP``) for ``tokens`` x ``features``."""

    tokens: int
    features: int  # the Linear's in_features
    threads: int

    def cache_args(self) -> tuple[str, dict]:
        return "whatif-quantize-kernel", {"tokens": self.tokens, "features": self.features, "threads": self.threads,
                                          "rounds": ROUNDS, **_int8_key()}

    def __str__(self) -> str:
        return f"int8 activation quantisation {self.tokens}x{self.features}"

    def calls(self) -> list[_Call]:
        from core.tvm import quantize

        m, k = self.tokens, self.features
        tokens = quantize.padded_tokens(m)
        kernel = _compile(quantize.quantize_activation_kernel(m, k, tokens), self.threads)
        x, xp, scale = _tensors(_random((m, k), 0), np.zeros((k // 4, tokens, 4), np.uint8),
                                np.zeros((2, tokens), np.float32))
        return [_Call(lambda: kernel(x, xp, scale), m * k * 4)]

    def summary(self, timings: list[Timing]) -> dict:
        return {"ms": timings[0].quiet_ms, "spread": relative_spread(timings[0])}


@dataclass(frozen=True)
class _Call:
    run: Callable[[], object]
    weight_bytes: int


def _is_cached(table: KernelTable, cache) -> bool:
    kind, inputs = table.cache_args()
    return is_cached(kind, inputs, libraries=TVM_LIBRARIES, cache=cache)


def measure_tables(tables, cache=None, progress: Progress = NO_PROGRESS, reference=None) -> int:
    """Time every table of ``tables`` the cache lacks, all in one round-robin with the reference kernel
    (``reference``: anything with ``sample() -> ms``; by default ``core.whatif.reference``'s), and cache each
    with the reference's time over the same quiet rounds; how many were timed."""
    missing = [table for table in dict.fromkeys(tables) if not _is_cached(table, cache)]
    if not missing:
        return 0
    threads = missing[0].threads
    calls = []
    for i, table in enumerate(missing):
        progress(0.7 * i / len(missing), f"compiling the {table}")
        calls.append(table.calls())
    reference = reference or reference_kernel(threads, cache)
    progress(0.7, f"timing {len(missing)} kernels round-robin, {ROUNDS} rounds")
    every_call = [call for table_calls in calls for call in table_calls]
    timings, reference_ms = time_round_robin(every_call, threads, ROUNDS, reference=reference)
    timings = iter(timings)
    for table, table_calls in zip(missing, calls):
        summary = {**table.summary([next(timings) for _ in table_calls]), "reference_ms": reference_ms}
        kind, inputs = table.cache_args()
        cached_json(kind, inputs, lambda: summary, libraries=TVM_LIBRARIES, cache=cache, description=str(table))
    progress(1.0, "kernels timed")
    return len(missing)


def time_round_robin(calls: list[_Call], threads: int, rounds: int = ROUNDS, reference=None):
    """Every call once per round, its weights out of cache; rounds ``PAUSE_S`` apart; a Timing per call.

    With ``reference`` (``sample() -> ms``, which evicts the caches itself), each round ends with one
    reference sample, and the result is ``(timings, reference ms over the quiet rounds)``."""
    samples: list[list[float]] = [[] for _ in calls]
    references: list[float] = []
    evict = np.zeros(EVICT_BYTES // 8)
    wake = min(calls, key=lambda call: call.weight_bytes).run  # wakes TVM's workers after the pause, touching little

    def one_round():
        np.add(evict, 1.0, out=evict)
        wake()
        for call, times in zip(calls, samples):
            start = time.perf_counter()
            call.run()
            times.append((time.perf_counter() - start) * 1e3)
        if reference is not None:
            references.append(reference.sample())

    measure_tvm(one_round, threads=threads, repeats=rounds, warmup=1, pause_s=PAUSE_S)
    samples = [times[-rounds:] for times in samples]
    quiet = quiet_indices([sum(round_times) for round_times in zip(*samples)])  # a spell slows a whole round
    timings = [Timing.of(times, warmup=1, threads=threads, quiet=quiet) for times in samples]
    if reference is None:
        return timings
    return timings, summarise(references[-rounds:]).ms


def _table(table, cache) -> tuple[dict, bool]:
    """``(cached table, cache_hit)``, timing it (alone) on a miss."""
    hit = _is_cached(table, cache)
    measure_tables([table], cache)
    kind, inputs = table.cache_args()
    return cached_json(kind, inputs, dict, libraries=TVM_LIBRARIES, cache=cache)[0], hit


def bsr_curve(tokens: int, layer: tuple[int, int], block: tuple[int, int], threads: int,
              cache=None, precision: str = "fp32") -> tuple[KernelCurve, bool]:
    """``layer`` is (out, in). ``(curve, cache_hit)``; the default schedule is the one compile_model uses."""
    data, hit = _table(KernelTable(tokens, layer, block, threads, precision), cache)
    return KernelCurve(SPARSITY_GRID, monotone(data["ms"]), data["spread"], data.get("reference_ms")), hit


def monotone(ms_by_ascending_sparsity) -> tuple[float, ...]:
    """More stored blocks never take less time; where timing noise says otherwise on a busy machine,
    each grid time is raised to the next sparser one's, so no estimate gets faster as density grows."""
    result = list(ms_by_ascending_sparsity)
    for i in range(len(result) - 2, -1, -1):
        result[i] = max(result[i], result[i + 1])
    return tuple(result)


@dataclass(frozen=True)
class KernelTime:
    """One kernel's quiet-round ms, relative spread, and the reference kernel's ms over the same rounds."""

    ms: float
    spread: float
    reference_ms: float | None = None


def dense_kernel_ms(tokens: int, layer: tuple[int, int], threads: int, cache=None,
                    precision: str = "fp32") -> tuple[KernelTime, bool]:
    """``(time, cache_hit)`` of the packed dense kernel for ``layer`` (out, in) in ``precision``."""
    data, hit = _table(KernelTable(tokens, layer, None, threads, precision), cache)
    return KernelTime(data["ms"], data["spread"], data.get("reference_ms")), hit


def quantize_kernel_ms(tokens: int, features: int, threads: int, cache=None) -> tuple[KernelTime, bool]:
    """``(time, cache_hit)`` of the int8 activation quantisation of ``tokens`` x ``features``."""
    data, hit = _table(QuantizeTable(tokens, features, threads), cache)
    return KernelTime(data["ms"], data["spread"], data.get("reference_ms")), hit


def _compile(func, threads: int):
    import tvm

    from core.tvm.target import host_target, set_runtime_threads

    set_runtime_threads(threads)
    module = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    return tvm.compile(module, target=host_target(threads))["main"]


def _tensors(*arrays: np.ndarray) -> list:
    import tvm

    return [tvm.runtime.tensor(np.ascontiguousarray(a), tvm.cpu()) for a in arrays]


def _random(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _bsr_calls(tokens: int, layer: tuple[int, int], block: tuple[int, int], schedule, threads: int) -> list[_Call]:
    """One compiled kernel on random block-sparse weights at every grid sparsity (values do not matter)."""
    from core.pruning.random_weights import random_block_sparse
    from core.tvm.bsr_format import to_bsr
    from core.tvm.bsr_kernel import bsr_matmul, output_shape

    n, k = layer
    shape = BsrKernelShape(tokens, k, n, block)
    kernel = _compile(bsr_matmul(shape, schedule), threads)
    x, out = _tensors(_random((k, tokens), 0), np.zeros(output_shape(shape, schedule), np.float32))  # reads X^T
    calls = []
    for sparsity in SPARSITY_GRID:
        bsr = to_bsr(random_block_sparse((n, k), sparsity, block, seed=0), block)
        weights = _tensors(bsr.data, bsr.indices, bsr.indptr)
        calls.append(_Call(lambda weights=weights: kernel(x, *weights, out),
                           bsr.data.nbytes + bsr.indices.nbytes + bsr.indptr.nbytes))
    return calls


def _dense_call(tokens: int, layer: tuple[int, int], schedule, threads: int) -> _Call:
    from core.tvm.dense_kernel import dense_matmul, pack_weight

    n, k = layer
    kernel = _compile(dense_matmul(tokens, k, n, schedule), threads)
    x, out, weight = _tensors(_random((tokens, k), 0), np.zeros((tokens, n), np.float32),
                              pack_weight(_random((n, k), 1), schedule.lanes))
    return _Call(lambda: kernel(x, weight, out), n * k * 4)


def _int8_bsr_calls(tokens: int, layer: tuple[int, int], block: tuple[int, int], schedule,
                    threads: int) -> list[_Call]:
    """The int8 BSR kernel on random block-sparse weights (quantised per row) at every grid sparsity."""
    from core.pruning.random_weights import random_block_sparse
    from core.tvm import amx_bsr_kernel, int8_bsr_kernel, quantize

    n, k = layer
    amx = isinstance(schedule, amx_bsr_kernel.AmxSchedule)
    shape = int8_bsr_kernel.Int8BsrShape(tokens, k, n, block)
    kernel = _compile(amx_bsr_kernel.amx_bsr_matmul(tokens, k, n) if amx
                      else int8_bsr_kernel.bsr_int8_matmul(shape, schedule), threads)
    xp = np.random.default_rng(0).integers(0, 256, (k // 4, tokens, 4), dtype=np.uint8)
    out_shape = (tokens, n) if amx else int8_bsr_kernel.output_shape(shape, schedule)
    x, scale, out = _tensors(xp, quantize.unit_params(tokens), np.zeros(out_shape, np.float32))
    calls = []
    for sparsity in SPARSITY_GRID:
        sparse = int8_bsr_kernel.to_int8_bsr(random_block_sparse((n, k), sparsity, block, seed=0), block)
        if amx:
            packed = amx_bsr_kernel.pack(sparse)
            weights = _tensors(packed.apack, packed.cols, packed.chunk_ptr, packed.scale, packed.sums)
            calls.append(_Call(lambda weights=weights: kernel(x, scale, *weights, out),
                               packed.apack.nbytes + packed.cols.nbytes + packed.chunk_ptr.nbytes))
            continue
        weights = _tensors(sparse.data, sparse.indices, sparse.indptr, sparse.scale, sparse.sums)
        calls.append(_Call(lambda weights=weights: kernel(x, scale, *weights, out),
                           sparse.data.nbytes + sparse.indices.nbytes + sparse.indptr.nbytes))
    return calls


def _int8_dense_call(tokens: int, layer: tuple[int, int], schedule, threads: int) -> _Call:
    from core.tvm import amx_bsr_kernel, int8_dense_kernel, quantize

    n, k = layer
    if isinstance(schedule, amx_bsr_kernel.AmxSchedule):
        kernel = _compile(amx_bsr_kernel.amx_dense_matmul(tokens, k, n), threads)
        packed = amx_bsr_kernel.prepare_dense(_random((n, k), 1))
    else:
        kernel = _compile(int8_dense_kernel.dense_int8_matmul(tokens, k, n, schedule), threads)
        packed = int8_dense_kernel.prepare_weight(_random((n, k), 1))
    xp = np.random.default_rng(0).integers(0, 256, (k // 4, tokens, 4), dtype=np.uint8)
    x, scale, weight, w_scale, corr, out = _tensors(xp, quantize.unit_params(tokens), packed.packed, packed.scale,
                                                    packed.sums, np.zeros((tokens, n), np.float32))
    return _Call(lambda: kernel(x, scale, weight, w_scale, corr, out), n * k)
