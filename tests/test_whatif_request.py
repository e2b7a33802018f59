"""WhatIfRequest: params in, the same request out; comma lists accepted; bad ones refused."""

import pytest

from core.errors import SparseLabError
from core.whatif.request import WhatIfRequest


@pytest.mark.parametrize("params", [
    {},
    {"model": "bert-tiny", "sparsities": [0.8, 0.95], "blocks": ["1x1", "16x1"], "seq_len": 32, "threads": 1},
    {"model": "minilm", "sparsities": "0.5,0.9", "blocks": "4x1, 16x1", "batch": 2},
    {"model": "bert-tiny", "precision": "int8", "peers": "onnxruntime-fp32"},
    {"precision": "int8", "blocks": "16x4", "peers": "none"},
    {"peers": ["onnxruntime-fp32", "pytorch"]},
])
def test_whatif_request_round_trips(params):
    request = WhatIfRequest.from_params(params)
    assert WhatIfRequest.from_params(request.as_params()) == request


def test_precision_picks_its_default_blocks_and_peers_default_to_every_engine():
    from core.peers.engines import ENGINES

    assert WhatIfRequest.from_params({"precision": "int8"}).blocks == ((16, 4), (4, 4), (1, 4))
    assert WhatIfRequest.from_params({}).blocks == ((1, 1), (4, 1), (8, 1), (16, 1), (32, 1))
    assert WhatIfRequest.from_params({}).peers == tuple(ENGINES) == WhatIfRequest(peers="all").peers
    assert WhatIfRequest.from_params({"peers": "none"}).peers == () == WhatIfRequest(peers=()).peers
    assert WhatIfRequest.from_params({"peers": "none"}).as_params()["peers"] == "none"


def test_comma_separated_lists_read_like_lists():
    assert (WhatIfRequest.from_params({"sparsities": "0.5,0.9", "blocks": "4x1, 16x1"})
            == WhatIfRequest.from_params({"sparsities": [0.5, 0.9], "blocks": ["4x1", "16x1"]}))


@pytest.mark.parametrize("params, message", [
    ({"sparsities": [1.0]}, r"outside \[0, 1\)"),
    ({"sparsities": "half"}, "must be numbers"),
    ({"threads": 0}, "at least 1"),
    ({"seq_len": -8}, "must be positive"),
    ({"blocks": "16"}, "ROWSxCOLS"),
    ({"precision": "int4"}, "Precision must be one of"),
    ({"precision": "int8", "blocks": "16x1"}, "4 input columns"),
    ({"peers": "tensorrt"}, "Unknown peer engine"),
])
def test_bad_whatif_requests_are_refused(params, message):
    with pytest.raises(SparseLabError, match=message):
        WhatIfRequest.from_params(params)
