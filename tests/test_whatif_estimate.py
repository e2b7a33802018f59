"""The What-if estimator on bert-tiny (small shapes, 1 thread): estimates, caching, checks, bad inputs, CLI."""

import json
import math

import pytest

from core import commands as cli
from core.errors import SparseLabError
from core.jobs import resolve_function
from core.run_store import RunStore
from core.whatif.accuracy import past_accuracy
from core.whatif.check import check_point
from core.whatif.estimate import estimate
from core.whatif.kernel_timings import KernelCurve
from core.whatif.request import WhatIfRequest
from tests.fixtures_tvm import SEQ_LEN

SPARSITIES = (0.8, 0.9, 0.95)
BLOCKS = ((1, 1), (16, 1))


def tiny(**changes) -> WhatIfRequest:
    return WhatIfRequest(**{"model": "bert-tiny", "sparsities": SPARSITIES, "blocks": BLOCKS, "seq_len": SEQ_LEN,
                            "threads": 1, **changes})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return RunStore(tmp_path_factory.mktemp("whatif-store") / "runs.sqlite")


@pytest.fixture(scope="module")
def first_and_second(module_cache, store):
    return estimate(tiny(), cache=module_cache, store=store), estimate(tiny(), cache=module_cache, store=store)


@pytest.mark.slow  # compiles and times kernels
def test_estimates_fall_with_sparsity_and_carry_error_bars(first_and_second):
    result = first_and_second[0]
    assert [(e.sparsity, e.block) for e in result.estimates] == [(s, b) for b in ("1x1", "16x1") for s in SPARSITIES]
    for block in ("1x1", "16x1"):
        curve = [e for e in result.estimates if e.block == block]
        assert [e.estimate_ms for e in curve] == sorted((e.estimate_ms for e in curve), reverse=True)
        for e in curve:
            assert e.estimate_ms == pytest.approx(e.linear_ms + e.rest_ms)
            # microsecond kernels on a busy machine can have bars wider than the estimate: only their presence is fixed
            assert 0 < e.error_ms < float("inf") and e.speedup == pytest.approx(result.dense_ms / e.estimate_ms)
            # the pooler is not in the exported graph (first output only): 12 Linears, all pruned
            assert (e.sparse_layers, e.dense_layers, e.note) == (12, 0, "")
    assert result.dense_ms > 0 and result.torch_dense_ms > 0 and set(result.rest_ms) == {"rows", "tokens"}
    sizes = [s for s in result.sizes if s.block == "16x1"]
    assert all(s.int8_sparse_bytes < s.int8_dense_bytes < s.fp32_bytes for s in sizes)
    assert [s.int8_sparse_bytes for s in sizes] == sorted((s.int8_sparse_bytes for s in sizes), reverse=True)


@pytest.mark.slow  # compiles and times kernels
def test_second_call_is_a_fast_identical_cache_hit(first_and_second):
    first, second = first_and_second
    assert not first.cache_hit and second.cache_hit
    assert second.seconds < first.seconds / 3
    assert second.estimates == first.estimates and second.sizes == first.sizes


@pytest.mark.slow  # compiles the whole model
def test_check_point_records_the_pair_and_calibrates_later_error_bars(module_cache, store, first_and_second):
    pair = check_point("bert-tiny", 0.9, (16, 1), SEQ_LEN, 1, repeats=5, cache=module_cache, store=store)
    assert pair["measured_ms"] > 0
    assert pair["estimate_ms"] == pytest.approx(first_and_second[0].estimates[4].estimate_ms)
    assert pair["rel_error"] == pytest.approx((pair["estimate_ms"] - pair["measured_ms"]) / pair["measured_ms"])
    assert pair["converted_layers"] == 12
    summary = past_accuracy(store, model="bert-tiny")
    assert summary["count"] == 1 and summary["pairs"][0]["id"] == pair["run_id"]
    assert summary["median_abs_rel_error"] == pytest.approx(abs(pair["rel_error"]))
    calibrated = estimate(tiny(), cache=module_cache, store=store)
    assert calibrated.calibration["count"] == 1
    before, after = first_and_second[0].estimates[4], calibrated.estimates[4]
    assert after.estimate_ms == before.estimate_ms
    assert after.error_ms == pytest.approx(math.hypot(before.error_ms, before.estimate_ms * abs(pair["rel_error"])))


@pytest.mark.slow  # compiles and times kernels
def test_a_block_that_divides_only_some_layers_keeps_the_others_dense(module_cache, store):
    result = estimate(tiny(sparsities=(0.9,), blocks=((1, 256),)), cache=module_cache, store=store)
    point = result.estimates[0]
    assert (point.sparse_layers, point.dense_layers) == (2, 10)  # only output.dense (128x512) is divisible
    assert "does not divide 10 pruned layers" in point.note and point.note in result.notes


@pytest.mark.parametrize("changes, message", [
    ({"sparsities": (1.0,)}, r"outside \[0, 1\)"),
    ({"sparsities": (-0.1,)}, r"outside \[0, 1\)"),
    ({"threads": 0}, "Threads"),
    ({"seq_len": 0}, "sequence length"),
])
def test_bad_requests_are_refused(changes, message):
    with pytest.raises(SparseLabError, match=message):
        tiny(**changes)


def test_a_block_dividing_no_layer_is_refused(module_cache, store):
    with pytest.raises(SparseLabError, match="divides none"):
        estimate(tiny(blocks=((3, 1),)), cache=module_cache, store=store)


def test_request_from_cli_style_params():
    request = WhatIfRequest.from_params({"model": "bert-tiny", "sparsities": "0.5, 0.9", "blocks": "1x1,16x1",
                                         "seq_len": "64", "threads": 2})
    assert request.sparsities == (0.5, 0.9) and request.blocks == ((1, 1), (16, 1)) and request.seq_len == 64
    with pytest.raises(SparseLabError):
        WhatIfRequest.from_params({"sparsities": "0.5,lots"})
    with pytest.raises(SparseLabError):
        WhatIfRequest.from_params({"blocks": "16by1"})


def test_curve_interpolates_in_log_density():
    grid = (0.5, 0.8, 0.9, 0.95)
    power_law = KernelCurve(grid, tuple(10 * (1 - s) ** 0.7 for s in grid), spread=0.02)
    assert power_law.at(0.9) == pytest.approx((10 * 0.1 ** 0.7, 0.02))
    ms, error = power_law.at(0.93)
    assert ms == pytest.approx(10 * 0.07 ** 0.7) and error == pytest.approx(0.02)  # exact for a power law
    assert power_law.interpolation_error == pytest.approx(0.0, abs=1e-12)
    bent = KernelCurve(grid, (10.0, 4.0, 3.0, 1.0), spread=0.0)
    assert bent.interpolation_error > 0.1 and bent.at(0.92)[1] == pytest.approx(bent.interpolation_error)


@pytest.mark.slow  # compiles and times kernels
def test_whatif_command_prints_the_estimates(capsys):
    code = cli.main(["whatif", "--model", "bert-tiny", "--seq-len", str(SEQ_LEN), "--threads", "1",
                     "--sparsities", "0.8,0.95", "--blocks", "16x1", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0, result
    assert {"estimates", "dense_ms", "torch_dense_ms", "sizes", "seconds", "cache_hit"} <= set(result)
    assert [(e["sparsity"], e["block"]) for e in result["estimates"]] == [(0.8, "16x1"), (0.95, "16x1")]
    assert {"sparsity", "block", "estimate_ms", "error_ms", "speedup"} <= set(result["estimates"][0])


def test_jobs_are_registered():
    assert resolve_function("whatif").__name__ == "whatif_job"
    assert resolve_function("whatif_check").__name__ == "whatif_check_job"


def test_kernel_curve_is_made_monotone_in_density():
    from core.whatif.kernel_timings import monotone

    assert monotone([5.0, 4.0, 4.5, 2.0]) == (5.0, 4.5, 4.5, 2.0)
