"""TvmRequest: params in, the same params out, and every refusal before a model loads."""

import pytest

from core.errors import SparseLabError
from core.tvm.request import TvmRequest


@pytest.mark.parametrize("params", [
    {"model": "bert-tiny", "whatif": 0.9},
    {"model": "bert-tiny", "prune": "block:0.8", "block": "4x1", "threads": 2, "seq_len": 32, "tune": True},
    {"weights": "/some/folder", "threshold": 0.5, "repeats": 5, "warmup": 0, "sweep": True},
    {"model": "bert-tiny", "whatif": 0.9, "block": "1x4", "precision": "int8"},
])
def test_params_round_trip(params):
    request = TvmRequest.from_params(params)
    assert TvmRequest.from_params(request.as_params()) == request
    assert {k: request.as_params()[k] for k in params} == params


def test_block_defaults_follow_the_kind_of_sparse_weights():
    assert TvmRequest.from_params({"whatif": 0.9}).block_shape == (16, 1)
    assert TvmRequest.from_params({"prune": "magnitude:0.9"}).block_shape == (1, 1)
    config = TvmRequest.from_params({"prune": "block:0.8", "block": "4x1"}).prune_config()
    assert (config.method, config.sparsity, config.block) == ("block", 0.8, (4, 1))
    assert TvmRequest.from_params({"weights": "x"}).prune_config() is None
    assert TvmRequest.from_params({"whatif": 0.9, "precision": "int8"}).block_shape == (16, 4)
    assert TvmRequest.from_params({"prune": "block:0.9", "precision": "int8"}).block_shape == (1, 4)
    assert TvmRequest().precision == "fp32"


@pytest.mark.parametrize("params, message", [
    ({"model": "bert-tiny"}, "exactly one of"),
    ({"whatif": 0.9, "prune": "magnitude:0.9"}, "exactly one of"),
    ({"prune": "magnitude"}, "METHOD:SPARSITY"),
    ({"prune": "shuffle:0.5"}, "Unknown pruning method 'shuffle'"),
    ({"whatif": 1.5}, r"outside \[0, 1\)"),
    ({"whatif": 0.9, "block": "16"}, "ROWSxCOLS"),
    ({"whatif": 0.9, "threads": 0}, "at least 1"),
    ({"whatif": 0.9, "seq_len": 0}, "must be positive"),
    ({"whatif": 0.9, "threshold": 1.0}, "threshold"),
    ({"whatif": "lots"}, "not a number"),
    ({"whatif": 0.9, "peers": "onnxruntime-fp32,tensorrt"}, "Unknown peer engine"),
    ({"whatif": 0.9, "precision": "int4"}, "Precision 'int4'"),
])
def test_bad_requests_are_refused_with_a_message(params, message):
    with pytest.raises(SparseLabError, match=message):
        TvmRequest.from_params(params)
