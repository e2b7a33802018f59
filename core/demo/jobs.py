"""The Demo page's job ``demo``: prune, store, compile and the fastest dense engine, as one summary card.

Each step is the same job the pages run (prune_job, store_job, tvm_job with every peer engine), called in
this process, so every artifact they cache (pruned model, .h5, compiled libraries, ONNX and
quantized peer models) serves the demo and the pages alike. The finished summary is cached
too, per request and CPU: a warm demo shows it at once, saying when it was measured, instead
of timing everything again.
"""

from __future__ import annotations

import json
import time

from core.artifact_cache import ArtifactSpec, default_cache
from core.demo.request import DemoRequest
from core.jobs import NO_PROGRESS, Progress, stage

SUMMARY_FILE = "summary.json"
STEPS = ("prune", "store", "compile")


def _steps(request: DemoRequest, progress: Progress) -> dict:
    from core.pruning.jobs import prune_job
    from core.storage.jobs import store_job
    from core.tvm.jobs import tvm_job

    config = request.prune_config().as_params()
    pruned = prune_job({"model": request.model, **config}, stage(progress, 0.0, 0.15))
    name = pruned["library_name"]
    stored = store_job({"model": name, "format": "sparselab", "threads": request.threads},
                       stage(progress, 0.15, 0.4))
    # the compile job times TVM with every peer engine in the same interleaved rounds: the card's ratio is
    # from one run, not from two jobs minutes apart
    compiled = tvm_job({"weights": name, "block": request.block, "seq_len": request.seq_len,
                        "threads": request.threads, "peers": "all"}, stage(progress, 0.4, 1.0))
    return {"prune": pruned, "store": stored, "compile": compiled}


def summarise(request: DemoRequest, steps: dict) -> dict:
    """The card: size reduction, fidelity, and latency against the fastest dense engine measured in this run."""
    pruned, stored, compiled = (steps[step] for step in STEPS)
    fastest = min(compiled["peers"], key=lambda r: r["ms"])
    fidelity = pruned.get("fidelity") or {}
    return {
        "request": request.as_params(),
        "model": pruned["model"], "library_name": pruned["library_name"],
        "stored_library_name": stored["stored"].get("library_name"),
        "sparsity": pruned["sparsity"],
        "mean_cosine": fidelity.get("mean_cosine"), "retrieval_accuracy": fidelity.get("retrieval_accuracy"),
        "dense_bytes": stored["stored"]["dense_size_bytes"], "stored_bytes": stored["stored"]["size_bytes"],
        "size_reduction": stored["stored"]["dense_size_bytes"] / stored["stored"]["size_bytes"],
        "tvm_sparse_ms": compiled["tvm_sparse_ms"], "tvm_dense_ms": compiled["tvm_dense_ms"],
        "torch_dense_ms": compiled["torch_dense_ms"], "allclose": compiled["allclose"],
        "fastest_peer": fastest["engine"], "fastest_peer_precision": fastest["precision"],
        "fastest_peer_ms": fastest["ms"], "speedup_vs_fastest_peer": fastest["ms"] / compiled["tvm_sparse_ms"],
        "peers": [{k: r[k] for k in ("engine", "precision", "ms")} for r in compiled["peers"]],
        "skipped_peers": compiled.get("skipped_peers", []),
        "measured_at": time.time(),
        "note": "Every engine timed in its own process, in rounds interleaved with TVM's, on the same threads: "
                "the host is shared, so the ratio is the number to read.",
    }


def demo_job(params: dict, progress: Progress = NO_PROGRESS) -> dict:
    request = DemoRequest.from_params(params)
    spec = ArtifactSpec("demo-summary", request.as_params(), libraries=("torch", "transformers"), cpu_specific=True)
    summary: dict = {}

    def build(folder) -> None:
        summary.update(summarise(request, _steps(request, progress)))
        (folder / SUMMARY_FILE).write_text(json.dumps(summary, default=str))

    folder, hit = default_cache().get_or_build(spec, build, description=f"demo of {request.model}")
    if hit:
        progress(1.0, "from the cache")
        summary = json.loads((folder / SUMMARY_FILE).read_text())
    return {**summary, "cache_hit": hit}
