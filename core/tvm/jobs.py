"""The Compile page's background job ``tvm``: compile dense and BSR, time them against PyTorch, record the runs."""

from __future__ import annotations

from core.jobs import NO_PROGRESS, Progress, stage
from core.model_source import resolve
from core.peers.jobs import record_peer_runs
from core.pruning.apply import pruned_copy
from core.pruning.block import format_block
from core.pruning.stats import linear_sparsity
from core.run_store import RunRecord, RunStore, default_store
from core.tvm.benchmark import Comparison, compare
from core.tvm.request import TvmRequest


def record_runs(store: RunStore, comparison: Comparison, *, model: str, block: str, sparsity: float,
                settings: dict) -> list[int]:
    """One run-store record per runtime (PyTorch dense, TVM dense, TVM BSR), sharing the settings."""
    summary = comparison.as_dict()
    shared = {key: summary[key] for key in ("converted_layers", "total_layers", "allclose", "max_abs_error",
                                            "tvm_dense_vs_torch", "sparse_speedup_vs_torch", "peak_rss_mb",
                                            "precision", "allclose_rule")}
    # int8 builds are other methods than fp32 ones ("tvm-bsr-int8"), so run lists never mix them up
    suffix = "" if comparison.precision == "fp32" else f"-{comparison.precision}"
    rows = (("pytorch-dense", comparison.torch_dense, 0.0, None, {}),
            (f"tvm-dense{suffix}", comparison.tvm_dense, 0.0, comparison.dense,
             {"compile_s": comparison.dense.compile_s, "cache_hit": comparison.dense.cache_hit,
              "cosine_vs_fp32": comparison.dense_cosine_vs_fp32}),
            (f"tvm-bsr{suffix}", comparison.tvm_sparse, sparsity, comparison.sparse,
             {"compile_s": comparison.sparse.compile_s, "cache_hit": comparison.sparse.cache_hit,
              "cosine_vs_fp32": comparison.cosine_vs_fp32}))
    return [store.add(RunRecord(
        kind="tvm", model=model, method=method, sparsity=run_sparsity,
        block=block if method.startswith("tvm-bsr") else None,
        size_bytes=compiled.library_bytes if compiled else None, latency_ms=timing.median_ms,
        latency_std_ms=timing.std_ms, threads=timing.threads, settings=settings,
        metrics={**shared, **extra, "timing": timing.as_dict()}))
        for method, timing, run_sparsity, compiled, extra in rows]


def tvm_job(params: dict, progress: Progress = NO_PROGRESS, store: RunStore | None = None) -> dict:
    """params: ``TvmRequest.from_params`` (named like the CLI flags).

    With ``weights`` (a pruned model folder) that model is both the sparse model and
    the dense baseline (PyTorch eager and dense TVM do not skip zeros); otherwise
    ``model`` is the dense baseline and ``whatif`` or ``prune`` makes the sparse one.
    """
    from core.tvm.kernel_sweep import sweep

    request = TvmRequest.from_params(params)
    progress(0.0, "loading the model")
    source = resolve(request.dense_source)
    dense_model = source.load_model()
    config = request.prune_config()
    sparse_model = dense_model if config is None else pruned_copy(dense_model, config)
    block = request.block_shape
    comparison = compare(
        dense_model, sparse_model, shape=request.shape, threads=request.threads, block=block,
        threshold=request.threshold, tune=request.tune, repeats=request.repeats, warmup=request.warmup,
        name=source.name, progress=stage(progress, 0.05, 0.9), precision=request.precision,
        peers=request.peer_engines)
    block_label, sparsity = format_block(block), linear_sparsity(sparse_model)
    result = {**comparison.as_dict(), "model": source.name, "block": block_label, "seq_len": request.seq_len,
              "sparsity": sparsity}
    store = store or default_store()
    result["run_ids"] = record_runs(store, comparison, model=source.name, block=block_label,
                                    sparsity=sparsity, settings=request.as_params())
    others = {**comparison.peers, "results": [r for r in comparison.peers["results"] if r["engine"] != "pytorch"],
              "model": source.name}  # PyTorch eager is recorded above, as the tvm kind's dense baseline
    result["peer_run_ids"] = record_peer_runs(store, others, {**request.as_params(), "with": "tvm"})
    if request.sweep:
        progress(0.9, "sweeping block shapes and sparsities")
        result["sweep"] = [point.as_dict() for point in sweep(threads=request.threads)]
    progress(1.0, "done")
    return result
