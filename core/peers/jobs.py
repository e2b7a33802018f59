"""The ``peers`` background job: measure the peer engines and record each one's latency in the run store.

Params are ``PeerRequest``'s (core/peers/request.py), named like the CLI flags.
Each measured engine becomes one run of kind ``peer`` (method = engine name,
latency = median, std, threads, accuracy = cosine with PyTorch fp32, size =
the files it loads); the rest of its row and the request ride along in
``metrics``/``settings``, so Compare can set peers beside SparseLab's own runs.
"""

from __future__ import annotations

from core.jobs import NO_PROGRESS, Progress
from core.peers.measure import measure_peers
from core.peers.request import PeerRequest
from core.run_store import RunRecord, default_store

RUN_KIND = "peer"


def record_peer_runs(store, report: dict, settings: dict) -> list[int]:
    """One run of kind ``peer`` per measured engine of ``report`` (PeerReport.as_dict())."""
    best = min((r["ms"] for r in report["results"]), default=None)
    return [store.add(RunRecord(
        kind=RUN_KIND, model=report["model"], method=result["engine"], size_bytes=result["size_bytes"],
        accuracy=result["cosine_vs_fp32"], latency_ms=result["ms"], latency_std_ms=result["std_ms"],
        threads=report["threads"], settings={**settings, "peer": True},
        metrics={**{k: v for k, v in result.items() if k != "timing"}, "timing": result.get("timing"),
                 "best_peer": report["best_peer"], "vs_best": result["ms"] / best}))
        for result in report["results"]]


def peers_job(params: dict, progress: Progress = NO_PROGRESS, store=None) -> dict:
    """``PeerReport.as_dict()`` plus ``run_ids`` (one run per measured engine)."""
    request = PeerRequest.from_params(params)
    report = measure_peers(request.model, seq_len=request.seq_len, batch=request.batch, threads=request.threads,
                           engines=request.engines, rounds=request.rounds, calls_per_round=request.calls_per_round,
                           warmup=request.warmup, fidelity=request.fidelity, progress=progress).as_dict()
    return {**report, "run_ids": record_peer_runs(store or default_store(), report, request.as_params())}
