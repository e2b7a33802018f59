"""Kernel tables: timed round-robin, cached per table, read back as curves."""

import pytest

from core.whatif import kernel_timings
from core.whatif.kernel_timings import (
    SPARSITY_GRID,
    KernelTable,
    _Call,
    bsr_curve,
    dense_kernel_ms,
    measure_tables,
    monotone,
    time_round_robin,
)


def test_round_robin_calls_every_kernel_once_per_round_after_a_wake_call():
    order = []
    calls = [_Call(lambda name=name: order.append(name), weight_bytes) for name, weight_bytes in
             (("big", 100), ("small", 1))]
    timings = time_round_robin(calls, threads=1, rounds=3)
    assert [t.repeats for t in timings] == [3, 3]
    # one warm-up round, then three; each starts with the call that touches the least memory
    assert order == ["small", "big", "small"] * 4
    assert all(t.median_ms >= t.min_ms > 0 for t in timings)


@pytest.mark.slow  # compiles TVM kernels
def test_missing_tables_are_timed_together_then_read_from_the_cache(monkeypatch):
    monkeypatch.setattr(kernel_timings, "ROUNDS", 3)
    tables = [KernelTable(16, (32, 32), (16, 1), 1), KernelTable(16, (32, 32), None, 1)]
    assert measure_tables(tables) == 2
    assert measure_tables(tables + tables) == 0

    curve, hit = bsr_curve(16, (32, 32), (16, 1), 1)
    (dense_ms, spread), dense_hit = dense_kernel_ms(16, (32, 32), 1)
    assert hit and dense_hit
    assert curve.sparsities == SPARSITY_GRID and len(curve.ms) == len(SPARSITY_GRID)
    assert list(curve.ms) == sorted(curve.ms, reverse=True) and dense_ms > 0 and spread >= 0


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
