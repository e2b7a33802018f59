"""The comparison behind the CLI/job, the ``tvm`` command, and the kernel sweep (bert-tiny, small shapes)."""

import json

import pytest

from core import cli
from core.tvm.benchmark import compare
from core.tvm.kernel_sweep import sweep
from core.tvm.relax_import import InputShape
from tests.fixtures_tvm import SEQ_LEN, magnitude_prune_, module_cache  # noqa: F401


def test_compare_reports_timings_layers_and_correctness(_tiny_dense, tiny_model, module_cache):
    magnitude_prune_(tiny_model, 0.95)
    run = lambda: compare(_tiny_dense, tiny_model, shape=InputShape(1, SEQ_LEN), threads=1, block=(1, 1),  # noqa
                          repeats=2, warmup=1, name="bert-tiny", cache=module_cache).as_dict()
    first, second = run(), run()
    assert first["allclose"] and first["max_abs_error"] < 1e-4 and first["dense_max_abs_error"] < 1e-4
    assert first["converted_layers"] == first["total_layers"] == 12
    assert all(first[k] > 0 for k in ("torch_dense_ms", "tvm_dense_ms", "tvm_sparse_ms", "peak_rss_mb"))
    assert first["timings"]["tvm_sparse"]["repeats"] == 2 and first["threads"] == 1
    assert not first["cache_hit"] and second["cache_hit"] and second["dense_cache_hit"]
    assert first["unscheduled"] == []


def test_tvm_command_prints_one_json_object(tiny_model, tmp_path, capsys):
    magnitude_prune_(tiny_model, 0.9)
    tiny_model.save_pretrained(tmp_path / "pruned")
    code = cli.main(["tvm", "--weights", str(tmp_path / "pruned"), "--seq-len", str(SEQ_LEN), "--repeats", "2",
                     "--warmup", "1", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0, result
    assert {"torch_dense_ms", "tvm_dense_ms", "tvm_sparse_ms", "converted_layers", "compile_s", "allclose",
            "cache_hit"} <= set(result)
    assert result["allclose"] and result["converted_layers"] == 12 and result["block"] == "1x1"


def test_tvm_command_needs_exactly_one_weight_source(capsys):
    with pytest.raises(SystemExit):
        cli.main(["tvm", "--model", "bert-tiny", "--json"])


def test_sweep_covers_every_block_and_sparsity():
    pytest.importorskip("core.pruning")
    points = sweep(layer=(64, 64), tokens=16, blocks=((1, 1), (16, 1)), sparsities=(0.8, 0.95), repeats=2)
    assert [(p.block, p.sparsity) for p in points] == [("1x1", 0.8), ("1x1", 0.95), ("16x1", 0.8), ("16x1", 0.95)]
    assert all(p.tvm_ms > 0 and p.speedup == pytest.approx(p.torch_dense_ms / p.tvm_ms) for p in points)


def test_whatif_request_converts_every_layer_with_the_requested_block():
    pytest.importorskip("core.pruning")
    from core.tvm.benchmark import run_request

    progress = []
    result = run_request({"model": "bert-tiny", "whatif": 0.9, "block": "16x1", "seq_len": 12, "threads": 1,
                          "repeats": 2, "warmup": 1}, lambda fraction, message: progress.append(fraction))
    assert result["block"] == "16x1" and result["allclose"]
    assert result["converted_layers"] == 12
    assert all(layer["block_sparsity"] == pytest.approx(0.9, abs=0.01) for layer in result["layers"])
    assert progress == sorted(progress) and progress[-1] == 1.0

    from core.run_store import default_store

    records = default_store().query(kind="tvm")
    assert sorted(r.id for r in records) == sorted(result["run_ids"])
    by_method = {r.method: r for r in records}
    assert set(by_method) == {"pytorch-dense", "tvm-dense", "tvm-bsr"}
    assert by_method["tvm-bsr"].latency_ms == result["tvm_sparse_ms"] and by_method["tvm-bsr"].block == "16x1"
    assert by_method["tvm-bsr"].sparsity == result["sparsity"] and by_method["tvm-bsr"].size_bytes > 0
    assert 0.8 < result["sparsity"] <= 0.9  # over every Linear, the unused pooler included
