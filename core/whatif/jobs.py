"""Background jobs for the What-if page: ``whatif`` (the estimates) and ``whatif_check`` (one real compile).

Params are JSON-friendly and named like the CLI flags (core/commands/whatif.py).
"""

from __future__ import annotations

from core.jobs import NO_PROGRESS, Progress
from core.run_store import RunRecord, default_store
from core.tvm.request import INT8_WHATIF_BLOCK, WHATIF_BLOCK
from core.whatif.check import check_point
from core.whatif.estimate import estimate
from core.whatif.request import WhatIfRequest

ESTIMATE_KIND = "whatif"


def whatif_job(params: dict, progress: Progress = NO_PROGRESS) -> dict:
    """``model``, ``sparsities``, ``blocks``, ``seq_len``, ``batch``, ``threads``, ``precision`` (fp32/int8),
    ``peers`` (engine names, "all" or "none") -> ``WhatIfResult.as_dict()``.

    Every point goes to the run store as kind ``whatif`` (latency and size are estimates, the error bar
    is ``latency_std_ms``), so Compare can set estimates beside measured runs."""
    result = estimate(WhatIfRequest.from_params(params), progress=progress).as_dict()
    store = default_store()
    sizes = {(s["sparsity"], s["block"]): s for s in result["sizes"]}
    for point in result["estimates"]:
        size = sizes.get((point["sparsity"], point["block"]), {})
        store.add(RunRecord(kind=ESTIMATE_KIND, model=result["model"], method="random", sparsity=point["sparsity"],
                            block=point["block"], size_bytes=size.get("int8_sparse_bytes"),
                            latency_ms=point["estimate_ms"], latency_std_ms=point["error_ms"],
                            threads=result["threads"],
                            settings={"seq_len": result["seq_len"], "batch": result["batch"], "estimated": True,
                                      "precision": result["precision"]},
                            metrics={**point, **size, "torch_dense_ms": result["torch_dense_ms"],
                                     "best_peer": result["best_peer"], "best_peer_ms": result["best_peer_ms"]}))
    return result


def whatif_check_job(params: dict, progress: Progress = NO_PROGRESS) -> dict:
    """``model``, ``sparsity``, ``block`` ('16x1'; int8 '16x4'), ``seq_len``, ``batch``, ``threads``, ``precision``,
    ``repeats`` -> the pair."""
    default_block = INT8_WHATIF_BLOCK if params.get("precision") == "int8" else WHATIF_BLOCK
    request = WhatIfRequest.from_params({**params, "sparsities": [params.get("sparsity")],
                                         "blocks": [params.get("block") or default_block], "peers": "none"})
    return check_point(request.model, request.sparsities[0], request.blocks[0], request.seq_len, request.threads,
                       batch=request.batch, repeats=int(params.get("repeats") or 20), progress=progress,
                       precision=request.precision)
