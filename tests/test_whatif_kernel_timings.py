"""Kernel tables: timed round-robin, cached per table, read back as curves."""

import itertools
import time

import pytest

from core.whatif import kernel_timings
from core.whatif.kernel_timings import (
    SPARSITY_GRID,
    KernelCurve,
    KernelTable,
    QuantizeTable,
    _Call,
    bsr_curve,
    dense_kernel_ms,
    measure_tables,
    monotone,
    quantize_kernel_ms,
    time_round_robin,
)


class CountingReference:
    """A fake reference kernel: its n-th sample takes n ms, and it records when it was called."""

    def __init__(self, order=None):
        self.order, self.count = order, 0

    def sample(self) -> float:
        self.count += 1
        if self.order is not None:
            self.order.append("reference")
        return float(self.count)


def test_round_robin_calls_every_kernel_once_per_round_after_a_wake_call():
    order = []
    calls = [_Call(lambda name=name: order.append(name), weight_bytes) for name, weight_bytes in
             (("big", 100), ("small", 1))]
    timings = time_round_robin(calls, threads=1, rounds=3)
    assert [t.repeats for t in timings] == [3, 3]
    # one warm-up round, then three; each starts with the call that touches the least memory
    assert order == ["small", "big", "small"] * 4
    assert all(t.median_ms >= t.min_ms > 0 for t in timings)


def test_the_reference_is_sampled_after_every_round_and_summarised_over_its_own_quiet_quarter():
    order = []
    # two calls a round (the wake call, then the timed one); the timed call of the first timed round is slow
    sleeps = itertools.chain([0.0, 0.0, 0.0, 0.003], itertools.repeat(0.0))
    calls = [_Call(lambda: (order.append("kernel"), time.sleep(next(sleeps))), 1)]
    reference = CountingReference(order)
    timings, reference_ms = time_round_robin(calls, threads=1, rounds=4, reference=reference)
    assert order == ["kernel", "kernel", "reference"] * 5  # the wake call, the timed call, then the reference
    # samples 2..5 belong to the timed rounds; the reference's own quiet quarter (one of four) is its fastest,
    # whichever rounds the kernels found quiet (tied to those, it followed their preemption: docs/whatif.md)
    assert reference_ms == 2.0 and timings[0].repeats == 4


def test_a_curve_scales_every_grid_time():
    curve = KernelCurve(SPARSITY_GRID, tuple(float(i + 1) for i in range(len(SPARSITY_GRID))), 0.1, 2.0)
    scaled = curve.scaled(1.5)
    assert scaled.ms == tuple(1.5 * v for v in curve.ms) and (scaled.spread, scaled.reference_ms) == (0.1, 2.0)


@pytest.mark.slow  # compiles TVM kernels
def test_missing_tables_are_timed_together_then_read_from_the_cache(monkeypatch):
    monkeypatch.setattr(kernel_timings, "ROUNDS", 3)
    tables = [KernelTable(16, (32, 32), (16, 1), 1), KernelTable(16, (32, 32), None, 1)]
    assert measure_tables(tables, reference=CountingReference()) == 2
    assert measure_tables(tables + tables) == 0

    curve, hit = bsr_curve(16, (32, 32), (16, 1), 1)
    dense, dense_hit = dense_kernel_ms(16, (32, 32), 1)
    assert hit and dense_hit
    assert curve.sparsities == SPARSITY_GRID and len(curve.ms) == len(SPARSITY_GRID)
    assert list(curve.ms) == sorted(curve.ms, reverse=True) and dense.ms > 0 and dense.spread >= 0
    # the fake reference's samples were 2, 3, 4 ms in the three timed rounds: every table keeps the quiet one
    assert curve.reference_ms == dense.reference_ms == 2.0


@pytest.mark.slow  # compiles the int8 TVM kernels
def test_int8_tables_time_the_vnni_kernels_and_the_activation_quantisation(monkeypatch):
    monkeypatch.setattr(kernel_timings, "ROUNDS", 3)
    tables = [KernelTable(16, (32, 32), block, 1, "int8") for block in ((16, 4), (4, 4), (1, 4), None)]
    tables += [QuantizeTable(16, 32, 1)]
    assert {str(t) for t in tables} >= {"int8 BSR 16x4 kernel 32x32", "int8 dense kernel 32x32",
                                        "int8 activation quantisation 16x32"}
    assert measure_tables(tables) == 5
    for block in ((16, 4), (4, 4), (1, 4)):
        curve, hit = bsr_curve(16, (32, 32), block, 1, precision="int8")
        assert hit and len(curve.ms) == len(SPARSITY_GRID) and curve.reference_ms > 0
        assert list(curve.ms) == sorted(curve.ms, reverse=True)
    dense, hit = dense_kernel_ms(16, (32, 32), 1, precision="int8")
    quantize, quantize_hit = quantize_kernel_ms(16, 32, 1)
    assert hit and quantize_hit and dense.ms > 0 and quantize.ms > 0
    assert dense.reference_ms == quantize.reference_ms == curve.reference_ms  # timed in the same rounds
    # an int8 table is its own cache entry: the fp32 dense table of the same shape is still missing
    assert measure_tables([KernelTable(16, (32, 32), None, 1)]) == 1


@pytest.mark.slow  # compiles a TVM kernel
def test_a_table_alone_is_timed_on_a_miss(monkeypatch):
    monkeypatch.setattr(kernel_timings, "ROUNDS", 2)
    _, hit = bsr_curve(16, (32, 32), (1, 1), 1)
    _, again = bsr_curve(16, (32, 32), (1, 1), 1)
    assert (hit, again) == (False, True)


@pytest.mark.slow  # compiles a TVM kernel
def test_measured_times_fall_with_sparsity_before_any_smoothing(monkeypatch):
    monkeypatch.setattr(kernel_timings, "ROUNDS", 3)
    table = KernelTable(16, (512, 512), (16, 1), 1)
    assert measure_tables([table]) == 1
    raw, _ = kernel_timings._table(table, None)  # the cached table exactly as timed, before monotone()
    assert raw["reference_ms"] > 0
    ms = dict(zip(SPARSITY_GRID, raw["ms"]))
    assert len(raw["ms"]) == len(SPARSITY_GRID) and all(v > 0 for v in raw["ms"])
    # 8192, 819 and 164 stored 16x1 blocks: a tenth and then a fifth of the work (measured ratios ~4 and ~5)
    assert ms[0.5] > 1.5 * ms[0.9] and ms[0.9] > 1.5 * ms[0.99], raw["ms"]

    curve, hit = bsr_curve(16, (512, 512), (16, 1), 1)
    assert hit and curve.ms == monotone(raw["ms"])  # the curve is the measured table, only ever raised
    assert curve.ms[0] == max(raw["ms"]) and curve.ms[-1] == raw["ms"][-1]


def test_monotone_raises_a_noisy_dip_to_the_next_sparser_time_and_keeps_the_rest():
    assert monotone([5.0, 3.0, 4.0, 1.0, 2.0, 0.5]) == (5.0, 4.0, 4.0, 2.0, 2.0, 0.5)
    assert monotone([4.0, 3.0, 2.0]) == (4.0, 3.0, 2.0)
