"""The demo job: the whole pipeline on a small model, summarised on one card, then served from the cache."""

import pytest

from core.demo.jobs import demo_job
from core.demo.request import DemoRequest
from core.errors import SparseLabError
from core.library.store import default_library
from core.run_store import default_store

PARAMS = {"model": "bert-tiny", "sparsity": 0.9, "seq_len": 16, "threads": 1}


def test_request_round_trip_and_refusals():
    request = DemoRequest.from_params(PARAMS)
    assert DemoRequest.from_params(request.as_params()) == request
    for bad, message in (({"sparsity": 1.2}, "outside"), ({"method": "shuffle"}, "Unknown pruning method"),
                         ({"threads": 0}, "threads"), ({"seq_len": "long"}, "not a number")):
        with pytest.raises(SparseLabError, match=message):
            DemoRequest.from_params({**PARAMS, **bad})


@pytest.mark.slow  # prunes, stores, compiles with TVM and times every peer engine
def test_the_card_joins_size_fidelity_and_latency_against_the_fastest_engine():
    card = demo_job(PARAMS)
    assert not card["cache_hit"] and card["allclose"]
    assert card["size_reduction"] == pytest.approx(card["dense_bytes"] / card["stored_bytes"])
    assert card["size_reduction"] > 2  # int8 and 90% zeros
    fastest = min(card["peers"], key=lambda peer: peer["ms"])
    assert card["fastest_peer"] == fastest["engine"] and len(card["peers"]) >= 2
    assert card["speedup_vs_fastest_peer"] == pytest.approx(fastest["ms"] / card["tvm_sparse_ms"])
    assert default_library().get(card["library_name"]).kind == "pruned"
    kinds = {run.kind for run in default_store().query()}
    assert {"prune", "store", "tvm", "peer"} <= kinds
    again = demo_job(PARAMS)
    assert again["cache_hit"] and {k: v for k, v in again.items() if k != "cache_hit"} == \
        {k: v for k, v in card.items() if k != "cache_hit"}
