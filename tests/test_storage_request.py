"""StoreRequest: params in, the same request out; bad ones refused before any work."""

import pytest

from core.errors import SparseLabError
from core.storage.request import StoreRequest


@pytest.mark.parametrize("params", [
    {"model": "bert-tiny"},
    {"model": "minilm", "format": "prunebert", "per_channel": True, "embeddings": "fp16",
     "task": "sequence-classification", "threads": 1},
    {"model": "/a/pruned/folder", "format": "sparselab", "embeddings": "fp32", "threads": 4},
])
def test_store_request_round_trips(params):
    request = StoreRequest.from_params(params)
    assert StoreRequest.from_params(request.as_params()) == request
    assert {k: request.as_params()[k] for k in params} == params


@pytest.mark.parametrize("params, message", [
    ({}, "Name the model"),
    ({"model": "bert-tiny", "format": "zip"}, "Unknown format 'zip'"),
    ({"model": "bert-tiny", "embeddings": "int4"}, "embeddings must be one of"),
    ({"model": "bert-tiny", "threads": -1}, "at least 1"),
])
def test_bad_store_requests_are_refused(params, message):
    with pytest.raises(SparseLabError, match=message):
        StoreRequest.from_params(params)
