"""The comparison behind the ``tvm`` job and command, and the kernel sweep (bert-tiny, small shapes)."""

import json

import pytest

from core import commands as cli
from core.tvm.benchmark import compare
from core.tvm.kernel_sweep import sweep
from core.tvm.relax_import import InputShape
from tests.fixtures_tvm import SEQ_LEN, magnitude_prune_

pytestmark = pytest.mark.slow  # compiles with TVM


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
    points = sweep(layer=(64, 64), tokens=16, blocks=((1, 1), (16, 1)), sparsities=(0.8, 0.95), repeats=2)
    assert [(p.block, p.sparsity) for p in points] == [("1x1", 0.8), ("1x1", 0.95), ("16x1", 0.8), ("16x1", 0.95)]
    assert all(p.tvm_ms > 0 and p.speedup == pytest.approx(p.torch_dense_ms / p.tvm_ms) for p in points)
