"""The ``tvm`` job: the sparse model it makes, the comparison, and the runs it records (bert-tiny)."""

import pytest

from core.run_store import default_store
from core.tvm.jobs import tvm_job

pytestmark = pytest.mark.slow  # compiles with TVM


def test_whatif_request_converts_every_layer_with_the_requested_block():
    progress = []
    result = tvm_job({"model": "bert-tiny", "whatif": 0.9, "block": "16x1", "seq_len": 12, "threads": 1,
                      "repeats": 2, "warmup": 1, "peers": "onnxruntime-fp32"},
                     lambda fraction, message: progress.append(fraction))
    assert result["block"] == "16x1" and result["allclose"]
    assert result["converted_layers"] == 12
    assert all(layer["block_sparsity"] == pytest.approx(0.9, abs=0.01) for layer in result["layers"])
    assert progress == sorted(progress) and progress[-1] == 1.0

    records = default_store().query(kind="tvm")
    assert sorted(r.id for r in records) == sorted(result["run_ids"])
    by_method = {r.method: r for r in records}
    assert set(by_method) == {"pytorch-dense", "tvm-dense", "tvm-bsr"}
    assert by_method["tvm-bsr"].latency_ms == result["tvm_sparse_ms"] and by_method["tvm-bsr"].block == "16x1"
    assert by_method["tvm-bsr"].sparsity == result["sparsity"] and by_method["tvm-bsr"].size_bytes > 0
    assert 0.8 < result["sparsity"] <= 0.9  # over every Linear, the unused pooler included

    # the peers were timed in the same interleaved rounds, each engine in a process of its own
    peers = {row["engine"]: row for row in result["peers"]}
    assert set(peers) == {"pytorch", "onnxruntime-fp32"} and peers["pytorch"]["ms"] == result["torch_dense_ms"]
    assert result["best_peer"] == min(peers, key=lambda name: peers[name]["ms"])
    assert result["speedup_vs_best_peer"] == pytest.approx(result["best_peer_ms"] / result["tvm_sparse_ms"])
    assert all(row["p10_ms"] <= row["ms"] <= row["p90_ms"] for row in peers.values())
    [peer_run] = default_store().query(kind="peer")
    assert peer_run.method == "onnxruntime-fp32" and peer_run.id in result["peer_run_ids"]
    assert peer_run.latency_ms == peers["onnxruntime-fp32"]["ms"]


def test_int8_whatif_request_reports_precision_and_cosine():
    result = tvm_job({"model": "bert-tiny", "whatif": 0.9, "block": "1x4", "seq_len": 16, "threads": 1,
                      "repeats": 2, "warmup": 1, "precision": "int8", "peers": "none"})
    assert result["precision"] == "int8" and result["block"] == "1x4"
    assert result["converted_layers"] == 12 and result["allclose"]
    assert "cosine" in result["allclose_rule"]
    assert result["cosine_vs_fp32"] >= 0.99 and result["dense_cosine_vs_fp32"] >= 0.99
    assert {layer["precision"] for layer in result["layers"]} == {"int8"}
    methods = {r.method for r in default_store().query(kind="tvm") if r.id in result["run_ids"]}
    assert methods == {"pytorch-dense", "tvm-dense-int8", "tvm-bsr-int8"}
