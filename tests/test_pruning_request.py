"""PruneRequest and SweepRequest: params in, the same request out."""

import pytest

from core.errors import SparseLabError
from core.pruning.request import PruneRequest, SweepRequest


@pytest.mark.parametrize("params", [
    {"method": "magnitude", "sparsity": 0.5},
    {"model": "bert-tiny", "task": "sequence-classification", "method": "magnitude", "sparsity": 0.9,
     "scope": "global", "patterns": ["*attention*"], "exclude": ["re:layer\\.0\\."]},
    {"model": "minilm", "method": "block", "sparsity": 0.8, "block": "4x1", "norm": "l1"},
    {"model": "bert-tiny", "method": "mn", "mn": "1:4"},
    {"model": "bert-tiny", "method": "random", "sparsity": 0.95, "block": "16x1", "seed": 3},
    {"model": "bert-tiny", "method": "wanda", "sparsity": 0.5, "calibration": 16},
])
def test_prune_request_round_trips(params):
    request = PruneRequest.from_params(params)
    assert PruneRequest.from_params(request.as_params()) == request
    again = request.as_params()
    assert {k: again[k] for k in params if k not in ("patterns", "exclude")} == {
        k: v for k, v in params.items() if k not in ("patterns", "exclude")}


@pytest.mark.parametrize("params", [
    {},
    {"model": "bert-tiny", "methods": ["magnitude:global", "block:4x1"], "sparsities": [0.5, 0.9]},
    {"model": "minilm", "task": "question-answering", "methods": ["mn:2:4"], "sparsities": [0.0, 0.3],
     "patterns": ["intermediate"], "seed": 2},
])
def test_sweep_request_round_trips(params):
    request = SweepRequest.from_params(params)
    assert SweepRequest.from_params(request.as_params()) == request


def test_an_unknown_task_is_refused():
    with pytest.raises(SparseLabError, match="Unknown task 'translation'"):
        PruneRequest.from_params({"method": "magnitude", "sparsity": 0.5, "task": "translation"})
