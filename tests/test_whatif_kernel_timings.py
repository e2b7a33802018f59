"""Kernel tables: timed round-robin, cached per table, read back as curves."""

from core.whatif import kernel_timings
from core.whatif.kernel_timings import (
    SPARSITY_GRID,
    KernelTable,
    _Call,
    bsr_curve,
    dense_kernel_ms,
    measure_tables,
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


def test_a_table_alone_is_timed_on_a_miss(monkeypatch):
    monkeypatch.setattr(kernel_timings, "ROUNDS", 2)
    _, hit = bsr_curve(16, (32, 32), (1, 1), 1)
    _, again = bsr_curve(16, (32, 32), (1, 1), 1)
    assert (hit, again) == (False, True)
