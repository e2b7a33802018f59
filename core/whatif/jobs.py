"""Background jobs for the What-if page: ``whatif`` (the estimates) and ``whatif_check`` (one real compile).

Params are JSON-friendly and named like the CLI flags (core/commands/whatif.py).
"""

from __future__ import annotations

from core.whatif.check import check_point
from core.whatif.estimate import WhatIfRequest, estimate


def whatif_job(params: dict, progress=None) -> dict:
    """``model``, ``sparsities``, ``blocks``, ``seq_len``, ``batch``, ``threads`` -> ``WhatIfResult.as_dict()``."""
    return estimate(WhatIfRequest.from_params(params), progress=progress).as_dict()


def whatif_check_job(params: dict, progress=None) -> dict:
    """``model``, ``sparsity``, ``block`` ('16x1'), ``seq_len``, ``batch``, ``threads``, ``repeats`` -> the pair."""
    request = WhatIfRequest.from_params({**params, "sparsities": [params.get("sparsity")],
                                         "blocks": [params.get("block") or "16x1"]})
    return check_point(request.model, request.sparsities[0], request.blocks[0], request.seq_len, request.threads,
                       batch=request.batch, repeats=int(params.get("repeats") or 20), progress=progress)
