import os
from contextlib import contextmanager

import pytest
import torch

from core.timing import measure, quiet_indices, thread_count


def test_measure_counts_calls_and_summarises():
    calls = []
    ticks = iter(range(0, 1000))
    timing = measure(lambda: calls.append(1), threads=1, repeats=5, warmup=2,
                     clock=lambda: next(ticks) / 1000)  # every timed call takes exactly 1 ms
    assert len(calls) == 7
    assert timing.median_ms == pytest.approx(1.0) and timing.min_ms == pytest.approx(1.0)
    assert timing.std_ms == pytest.approx(0.0) and timing.repeats == 5 and timing.threads == 1


def test_placement_wraps_the_timed_calls_only():
    events = []

    @contextmanager
    def placement():
        events.append("enter")
        yield
        events.append("exit")

    measure(lambda: events.append("call"), threads=1, repeats=2, warmup=1, placement=placement)
    assert events == ["call", "enter", "call", "call", "exit"]


def test_thread_count_is_set_and_restored():
    before = torch.get_num_threads()
    os.environ.pop("TVM_NUM_THREADS", None)
    with thread_count(1):
        assert torch.get_num_threads() == 1
        assert os.environ["TVM_NUM_THREADS"] == "1"
    assert torch.get_num_threads() == before
    assert "TVM_NUM_THREADS" not in os.environ


def test_rejects_nonsense():
    with pytest.raises(ValueError):
        measure(lambda: None, threads=0)
    with pytest.raises(ValueError):
        measure(lambda: None, threads=1, repeats=0)


def test_quiet_runs_are_the_fastest_quarter():
    assert sorted(quiet_indices([5.0, 1.0, 9.0, 2.0, 7.0, 3.0, 8.0, 4.0])) == [1, 3]
    assert quiet_indices([3.0]) == [0]
    ticks = iter([0, 1, 1, 11, 11, 13, 13, 14, 14, 24])  # runs of 1, 10, 2, 1, 10 ms
    timing = measure(lambda: None, threads=1, repeats=5, warmup=0, clock=lambda: next(ticks) / 1000)
    assert timing.quiet_ms == 1.0 and timing.median_ms == 2.0


def test_timing_keeps_the_10th_and_90th_percentile_of_its_runs():
    import numpy as np

    from core.timing import Timing

    samples = [5.0, 1.0, 9.0, 2.0, 7.0, 3.0, 40.0]
    timing = Timing.of(samples, warmup=0, threads=1)
    assert timing.p10_ms == np.percentile(samples, 10) and timing.p90_ms == np.percentile(samples, 90)
    assert 0 < timing.p10_ms <= timing.median_ms <= timing.p90_ms  # a spread that never runs below zero
