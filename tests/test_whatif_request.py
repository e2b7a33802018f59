"""WhatIfRequest: params in, the same request out; comma lists accepted; bad ones refused."""

import pytest

from core.errors import SparseLabError
from core.whatif.request import WhatIfRequest


@pytest.mark.parametrize("params", [
    {},
    {"model": "bert-tiny", "sparsities": [0.8, 0.95], "blocks": ["1x1", "16x1"], "seq_len": 32, "threads": 1},
    {"model": "minilm", "sparsities": "0.5,0.9", "blocks": "4x1, 16x1", "batch": 2},
])
def test_whatif_request_round_trips(params):
    request = WhatIfRequest.from_params(params)
    assert WhatIfRequest.from_params(request.as_params()) == request


def test_comma_separated_lists_read_like_lists():
    assert (WhatIfRequest.from_params({"sparsities": "0.5,0.9", "blocks": "4x1, 16x1"})
            == WhatIfRequest.from_params({"sparsities": [0.5, 0.9], "blocks": ["4x1", "16x1"]}))


@pytest.mark.parametrize("params, message", [
    ({"sparsities": [1.0]}, r"outside \[0, 1\)"),
    ({"sparsities": "half"}, "must be numbers"),
    ({"threads": 0}, "at least 1"),
    ({"seq_len": -8}, "must be positive"),
    ({"blocks": "16"}, "ROWSxCOLS"),
])
def test_bad_whatif_requests_are_refused(params, message):
    with pytest.raises(SparseLabError, match=message):
        WhatIfRequest.from_params(params)
