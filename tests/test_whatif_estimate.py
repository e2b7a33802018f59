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


PEER = "onnxruntime-fp32"  # no NNCF quantisation in the tests


def tiny(**changes) -> WhatIfRequest:
    return WhatIfRequest(**{"model": "bert-tiny", "sparsities": SPARSITIES, "blocks": BLOCKS, "seq_len": SEQ_LEN,
                            "threads": 1, "peers": (PEER,), **changes})


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
    # the peer is measured once and set beside every estimate
    assert [p["engine"] for p in result.peers] == [PEER] and result.best_peer == PEER and result.best_peer_ms > 0
    for e in result.estimates:
        assert e.speedup_vs_best_peer == pytest.approx(result.best_peer_ms / e.estimate_ms)
        assert e.unscaled_ms > 0 and e.quantize_ms == 0 and e.precision == "fp32"
    assert result.reference["now_ms"] > 0 and all(f > 0 for f in result.reference["factors"].values())
    # every pruned shape ran as BSR in each family's rest build: each got its in-model factor
    shapes = {"128x128", "512x128", "128x512"}
    assert set(result.in_model) == {f"{name} bsr {shape}" for name in ("rows", "tokens") for shape in shapes}
    assert all(0 < factor < float("inf") for factor in result.in_model.values())
    sizes = [s for s in result.sizes if s.block == "16x1"]
    assert all(s.int8_sparse_bytes < s.int8_dense_bytes < s.fp32_bytes for s in sizes)
    assert [s.int8_sparse_bytes for s in sizes] == sorted((s.int8_sparse_bytes for s in sizes), reverse=True)


@pytest.mark.slow  # compiles and times kernels
def test_second_call_is_a_fast_identical_cache_hit(first_and_second):
    first, second = first_and_second
    assert not first.cache_hit and second.cache_hit
    assert second.seconds < first.seconds / 3
    assert second.sizes == first.sizes and second.peers[0]["measured_ms"] == first.peers[0]["measured_ms"]
    # the same cached tables, read at the host's speed of each moment (the reference kernel timed again)
    drift = second.reference["now_ms"] / first.reference["now_ms"]
    for a, b in zip(first.estimates, second.estimates):
        assert b.unscaled_ms == a.unscaled_ms
        assert b.estimate_ms == pytest.approx(a.estimate_ms * drift, rel=1e-3)


class FakeReference:
    """A reference kernel whose every sample takes ``ms``."""

    def __init__(self, ms: float):
        self.ms = ms

    def sample(self) -> float:
        return self.ms


@pytest.mark.slow  # compiles the whole model
def test_check_point_records_the_pair_and_calibrates_later_error_bars(module_cache, store, first_and_second,
                                                                      monkeypatch):
    from core.whatif import estimate as estimate_module
    from core.whatif.reference import ReferenceTime

    before = estimate(tiny(), cache=module_cache, store=store, reference_ms=2.0)
    # the estimate sees the reference at 2.0 ms, the check at 3.0 ms: the host is 1.5x slower at the check
    monkeypatch.setattr(estimate_module, "reference_now", lambda threads, cache=None: ReferenceTime(2.0, 1, 2.0))
    pair = check_point("bert-tiny", 0.9, (16, 1), SEQ_LEN, 1, repeats=5, cache=module_cache, store=store,
                       reference=FakeReference(3.0))
    assert pair["measured_ms"] > 0 and pair["reference_ms"] == 3.0 and pair["estimate_reference_ms"] == 2.0
    assert pair["estimated_ms"] == pytest.approx(before.estimates[4].estimate_ms)
    assert pair["estimate_ms"] == pytest.approx(1.5 * pair["estimated_ms"])
    assert pair["unscaled_ms"] == pytest.approx(before.estimates[4].unscaled_ms)
    assert pair["rel_error"] == pytest.approx((pair["estimate_ms"] - pair["measured_ms"]) / pair["measured_ms"])
    assert pair["converted_layers"] == 12 and pair["precision"] == "fp32"
    summary = past_accuracy(store, model="bert-tiny")
    assert summary["count"] == 1 and summary["pairs"][0]["id"] == pair["run_id"]
    assert summary["median_abs_rel_error"] == pytest.approx(abs(pair["rel_error"]))
    calibrated = estimate(tiny(), cache=module_cache, store=store, reference_ms=2.0)
    assert calibrated.calibration["count"] == 1
    before, after = before.estimates[4], calibrated.estimates[4]
    assert after.estimate_ms == before.estimate_ms
    assert after.error_ms == pytest.approx(math.hypot(before.error_ms, before.estimate_ms * abs(pair["rel_error"])))


@pytest.mark.slow  # compiles and times the int8 kernels and the int8 rest of the model
def test_int8_estimates_add_the_activation_quantisation_and_compare_with_the_peer(module_cache, store):
    result = estimate(tiny(precision="int8", blocks=((16, 4), (1, 4))), cache=module_cache, store=store)
    assert result.precision == "int8" and set(result.rest_ms) == {"rows", "tokens"}
    assert [(e.sparsity, e.block) for e in result.estimates] == [(s, b) for b in ("16x4", "1x4") for s in SPARSITIES]
    for e in result.estimates:
        assert e.precision == "int8" and e.quantize_ms > 0
        assert e.estimate_ms == pytest.approx(e.linear_ms + e.quantize_ms + e.rest_ms)
        assert (e.sparse_layers, e.dense_layers, e.note) == (12, 0, "")
        assert e.speedup_vs_best_peer == pytest.approx(result.best_peer_ms / e.estimate_ms)
    assert result.best_peer == PEER and result.dense_ms > 0
    again = estimate(tiny(precision="int8", blocks=((16, 4), (1, 4))), cache=module_cache, store=store)
    assert again.cache_hit


def test_int8_refuses_blocks_the_int8_kernels_do_not_take():
    with pytest.raises(SparseLabError, match="4 input columns"):
        tiny(precision="int8", blocks=((16, 1),))


def fake_measurements(reference_then: float, in_model: tuple = (), rest_reference: float | None = None):
    """A stand-in for estimate._Measurements: every table, rest and the peers measured when the reference
    took ``reference_then`` ms (the fake clock; the rest at ``rest_reference`` if given, with ``in_model``
    kernel times); no model, no TVM."""
    from core.whatif import estimate as module
    from core.whatif.kernel_timings import SPARSITY_GRID, KernelTime
    from core.whatif.rest_of_model import LinearInfo, ModelProfile, Rest

    profile = ModelProfile("fake", 10_000, (LinearInfo("a", (64, 64), True), LinearInfo("b", (64, 64), True),
                                            LinearInfo("head", (64, 64), False)), 40.0, 1.0)

    class Fake:
        def __init__(self, request, cache, progress, reference_ms=None):
            self.request, self.precision, self.hits, self.factors = request, request.precision, [True], {}
            self.in_model = {}
            self._reference_ms = reference_ms

        def reference_ms(self):
            return self._reference_ms

        factor = module._Measurements.factor
        int8 = module._Measurements.int8

        def profile(self):
            return profile

        def time_kernels(self, profile):
            pass

        def curve(self, shape, block):
            return KernelCurve(SPARSITY_GRID, tuple(2.0 * (1 - s) for s in SPARSITY_GRID), 0.01, reference_then)

        def dense(self, shape):
            return KernelTime(2.0, 0.01, reference_then)

        def quantize(self, features):
            return KernelTime(0.1, 0.01, reference_then)

        def rest(self, profile, family_name):
            quantize = ((64, 2),) if self.precision == "int8" else ()  # int8 builds quantise 2 distinct inputs
            return Rest(5.0, 0.2, frozenset({"a", "b", "head"}), rest_reference or reference_then, quantize,
                        in_model=in_model)

        def peers(self):
            return {"peers": [{"engine": PEER, "precision": "fp32", "ms": 8.0},
                              {"engine": "pytorch", "precision": "fp32", "ms": 12.0}],
                    "skipped": [], "reference_ms": reference_then}

    return Fake


@pytest.mark.parametrize("precision, blocks", [("fp32", ((16, 1),)), ("int8", ((16, 4),))])
def test_estimates_scale_by_the_reference_now_over_then(monkeypatch, tmp_path, precision, blocks):
    from core.artifact_cache import ArtifactCache
    from core.whatif import estimate as module

    monkeypatch.setattr(module, "_Measurements", fake_measurements(reference_then=1.0))
    cache, store = ArtifactCache(tmp_path / "cache", cap_bytes=2**30), RunStore(tmp_path / "runs.sqlite")
    request = tiny(sparsities=(0.9,), blocks=blocks, precision=precision, peers=(PEER, "pytorch"))
    then = estimate(request, cache=cache, store=store, reference_ms=1.0)  # estimated when the tables were timed
    now = estimate(request, cache=cache, store=store, reference_ms=1.5)  # the host is 1.5x slower now
    (a, b) = then.estimates[0], now.estimates[0]
    assert a.estimate_ms == pytest.approx(a.unscaled_ms) and b.unscaled_ms == pytest.approx(a.estimate_ms)
    assert b.estimate_ms == pytest.approx(1.5 * a.estimate_ms) and b.error_ms == pytest.approx(1.5 * a.error_ms)
    assert (b.linear_ms, b.rest_ms, b.quantize_ms) == pytest.approx((1.5 * a.linear_ms, 7.5, 1.5 * a.quantize_ms))
    assert now.dense_ms == pytest.approx(1.5 * then.dense_ms)
    assert (now.best_peer, now.best_peer_ms) == (PEER, pytest.approx(12.0))  # the peers scale alike
    assert [p["engine"] for p in now.peers] == [PEER, "pytorch"] and now.peers[0]["measured_ms"] == 8.0
    assert b.speedup_vs_best_peer == pytest.approx(a.speedup_vs_best_peer) == pytest.approx(8.0 / a.estimate_ms)
    assert now.reference["now_ms"] == 1.5 and set(now.reference["factors"].values()) == {1.5}
    # two pruned 64x64 layers at 0.9 (2 * 0.2 ms) + the unpruned one dense (2 ms) + rest 5 ms
    # (+ int8: 2 quantisation calls of 0.1 ms)
    assert a.estimate_ms == pytest.approx(2 * 0.2 + 2.0 + 5.0 + (0.2 if precision == "int8" else 0.0))
    assert a.quantize_ms == pytest.approx(0.2 if precision == "int8" else 0.0)


@pytest.mark.parametrize("precision, blocks", [("fp32", ((16, 1),)), ("int8", ((16, 4),))])
def test_each_kernel_is_scaled_by_how_much_slower_it_ran_inside_the_model(monkeypatch, tmp_path, precision,
                                                                          blocks):
    """The rest's build ran the BSR 64x64 kernel at 1.5x its table (at REST_SPARSITY) and the dense one at 1.25x,
    while the host was 2x slower than when the tables were timed: only the kernels' own slowdown is applied."""
    from core.artifact_cache import ArtifactCache
    from core.whatif import estimate as module
    from core.whatif.rest_of_model import REST_SPARSITY

    table_bsr = 2.0 * (1 - REST_SPARSITY)  # the fake curve at the rest's sparsity
    in_model = (("bsr 64x64", 2 * 1.5 * table_bsr), ("dense 64x64", 2 * 1.25 * 2.0), ("quantize 64", 2 * 3 * 0.1))
    monkeypatch.setattr(module, "_Measurements", fake_measurements(1.0, in_model, rest_reference=2.0))
    cache, store = ArtifactCache(tmp_path / "cache", cap_bytes=2**30), RunStore(tmp_path / "runs.sqlite")
    result = estimate(tiny(sparsities=(0.9,), blocks=blocks, precision=precision, peers="none"), cache=cache,
                      store=store, reference_ms=1.0)
    point = result.estimates[0]
    quantize = 2 * 3 * 0.1 if precision == "int8" else 0.0
    assert point.linear_ms == pytest.approx(2 * 0.2 * 1.5 + 2.0 * 1.25)
    assert point.quantize_ms == pytest.approx(quantize)
    assert point.estimate_ms == pytest.approx(point.linear_ms + quantize + 5.0 * 0.5)  # the rest: 2x slower then
    expected = {"rows bsr 64x64": 1.5, "rows dense 64x64": 1.25, **({"rows quantize 64": 3.0} if quantize else {})}
    assert result.in_model == pytest.approx(expected)
    assert result.dense_ms == pytest.approx(3 * 2.0 * 1.25 + quantize + 2.5)  # every layer dense


def test_no_peers_means_no_peer_columns(monkeypatch, tmp_path):
    from core.artifact_cache import ArtifactCache
    from core.whatif import estimate as module

    fake = fake_measurements(reference_then=1.0)
    monkeypatch.setattr(fake, "peers", lambda self: {"peers": [], "skipped": [], "reference_ms": None})
    monkeypatch.setattr(module, "_Measurements", fake)
    result = estimate(tiny(sparsities=(0.9,), blocks=((16, 1),), peers="none"),
                      cache=ArtifactCache(tmp_path / "cache", cap_bytes=2**30), store=RunStore(tmp_path / "r.sqlite"),
                      reference_ms=1.0)
    assert result.peers == () and result.best_peer is None and result.estimates[0].speedup_vs_best_peer is None


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
                     "--sparsities", "0.8,0.95", "--blocks", "16x1", "--peers", "none", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0, result
    assert {"estimates", "dense_ms", "torch_dense_ms", "sizes", "seconds", "cache_hit"} <= set(result)
    assert [(e["sparsity"], e["block"]) for e in result["estimates"]] == [(0.8, "16x1"), (0.95, "16x1")]
    assert {"sparsity", "block", "estimate_ms", "error_ms", "speedup", "speedup_vs_best_peer",
            "unscaled_ms"} <= set(result["estimates"][0])
    assert result["precision"] == "fp32" and result["peers"] == [] and result["best_peer"] is None


def test_whatif_command_takes_precision_and_peers():
    from core.commands import whatif as command

    parser = __import__("argparse").ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--precision", "int8", "--peers", "onnxruntime-fp32"])
    request = WhatIfRequest.from_params({key: getattr(args, key) for key in
                                         ("model", "sparsities", "blocks", "precision", "peers")})
    assert request.precision == "int8" and request.blocks == ((16, 4), (4, 4), (1, 4))
    assert request.peers == ("onnxruntime-fp32",)


def test_jobs_are_registered():
    assert resolve_function("whatif").__name__ == "whatif_job"
    assert resolve_function("whatif_check").__name__ == "whatif_check_job"


def test_kernel_curve_is_made_monotone_in_density():
    from core.whatif.kernel_timings import monotone

    assert monotone([5.0, 4.0, 4.5, 2.0]) == (5.0, 4.5, 4.5, 2.0)
