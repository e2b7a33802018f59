"""Check one estimate against the real thing: compile the what-if model whole with TVM and time it.

The pair (estimate, measured) goes to the run store as a ``whatif-check`` run,
so the page can show how accurate past estimates were and later error bars are
calibrated by them (``accuracy``).
"""

from __future__ import annotations

from core.jobs import NO_PROGRESS, Progress, stage
from core.model_source import resolve
from core.pruning.block import format_block
from core.run_store import RunRecord, RunStore, default_store
from core.tvm.relax_import import example_inputs
from core.tvm.target import measure_tvm
from core.whatif.accuracy import CHECK_KIND
from core.whatif.estimate import estimate
from core.whatif.request import WhatIfRequest
from core.whatif.rest_of_model import PAUSE_S, compile_whatif, model_profile


def check_point(model: str, sparsity: float, block: tuple[int, int], seq_len: int = 128, threads: int = 2, *,
                batch: int = 1, repeats: int = 20, cache=None, store: RunStore | None = None,
                progress: Progress = NO_PROGRESS) -> dict:
    """Measured vs estimated whole-model latency at one (sparsity, block); the pair is recorded in ``store``."""
    store = store or default_store()
    request = WhatIfRequest(model, (sparsity,), (block,), seq_len, batch, threads)
    progress(0.0, "estimating")
    result = estimate(request, cache=cache, store=store)
    point = result.estimates[0]
    progress(0.1, "loading the model")
    source = resolve(model)
    dense = source.load_model()
    profile, _ = model_profile(source, request.shape, threads, lambda: dense, cache)
    compiled = compile_whatif(dense, profile.linears, sparsity, block, request.shape, threads,
                              f"{source.name} what-if check", cache=cache,
                              progress=stage(progress, 0.15, 0.9))
    progress(0.9, "timing the compiled model")
    runner = compiled.runner()
    args = runner.to_device(example_inputs(request.shape, dense.config.vocab_size))
    timing = measure_tvm(lambda: runner.run_device(args), threads=threads, repeats=repeats, pause_s=PAUSE_S)
    measured = timing.quiet_ms  # of spaced runs, the quiet ones: neighbours on the host only ever slow runs down
    rel_error = (point.estimate_ms - measured) / measured
    metrics = {"estimate_ms": point.estimate_ms, "error_ms": point.error_ms, "measured_ms": measured,
               "measured_median_ms": timing.median_ms, "measured_std_ms": timing.std_ms, "rel_error": rel_error,
               "within_error_bar": abs(point.estimate_ms - measured) <= point.error_ms,
               "compile_s": compiled.compile_s, "converted_layers": compiled.converted_layers,
               "estimate_cache_hit": result.cache_hit}
    record = RunRecord(kind=CHECK_KIND, model=source.name, method="random", sparsity=sparsity,
                       block=format_block(block), latency_ms=measured, latency_std_ms=timing.std_ms, threads=threads,
                       settings={"seq_len": seq_len, "batch": batch, "repeats": repeats}, metrics=metrics)
    store.add(record)
    progress(1.0, "done")
    return {"model": source.name, "sparsity": sparsity, "block": format_block(block), "seq_len": seq_len,
            "batch": batch, "threads": threads, "run_id": record.id, **metrics}
