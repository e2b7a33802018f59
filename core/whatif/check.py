"""Check one estimate against the real thing: compile the what-if model whole with TVM and time it.

The pair (estimate, measured) goes to the run store as a ``whatif-check`` run,
so the page can show how accurate past estimates were and later error bars are
calibrated by them (``accuracy``).

The reference kernel (``core.whatif.reference``) is sampled after every timed
run, and the estimate is moved to the moment of the check: ``estimate_ms`` is
the estimate times (reference during the check / reference when estimated),
the ``rel_error`` is against it; ``estimated_ms`` (as estimated) and
``unscaled_ms`` (the cached tables as measured, no drift scaling at all) and
their errors are recorded beside, so the scaling's effect stays visible.
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
from core.whatif.reference import drift_factor, reference_kernel, summarise
from core.whatif.request import WhatIfRequest
from core.whatif.rest_of_model import PAUSE_S, compile_whatif, model_profile


def time_with_reference(run, threads: int, repeats: int, reference) -> tuple:
    """``(Timing of run(), reference ms over the same quiet runs)``: each run (``PAUSE_S`` apart) is
    followed by one sample of ``reference`` (``sample() -> ms``)."""
    import time

    from core.timing import Timing

    runs, references = [], []

    def one():
        start = time.perf_counter()
        run()
        runs.append((time.perf_counter() - start) * 1e3)
        references.append(reference.sample())

    measure_tvm(one, threads=threads, repeats=repeats, pause_s=PAUSE_S)
    runs, references = runs[-repeats:], references[-repeats:]
    return Timing.of(runs, warmup=3, threads=threads), summarise(references).ms


def check_point(model: str, sparsity: float, block: tuple[int, int], seq_len: int = 128, threads: int = 2, *,
                batch: int = 1, repeats: int = 20, cache=None, store: RunStore | None = None,
                progress: Progress = NO_PROGRESS, precision: str = "fp32", reference=None) -> dict:
    """Measured vs estimated whole-model latency at one (sparsity, block) in ``precision``; the pair is recorded
    in ``store``. ``reference``: the reference kernel (``sample() -> ms``; by default core.whatif.reference's)."""
    store = store or default_store()
    request = WhatIfRequest(model, (sparsity,), (block,), seq_len, batch, threads, precision=precision, peers=())
    progress(0.0, "estimating")
    result = estimate(request, cache=cache, store=store)
    point = result.estimates[0]
    progress(0.1, "loading the model")
    source = resolve(model)
    dense = source.load_model()
    profile, _ = model_profile(source, request.shape, threads, lambda: dense, cache)
    compiled = compile_whatif(dense, profile.linears, sparsity, block, request.shape, threads,
                              f"{source.name} what-if check", cache=cache,
                              progress=stage(progress, 0.15, 0.9), precision=precision)
    progress(0.9, "timing the compiled model")
    runner = compiled.runner()
    args = runner.to_device(example_inputs(request.shape, dense.config.vocab_size))
    timing, reference_ms = time_with_reference(lambda: runner.run_device(args), threads, repeats,
                                               reference or reference_kernel(threads, cache))
    measured = timing.quiet_ms  # of spaced runs, the quiet ones: neighbours on the host only ever slow runs down
    estimated_reference = result.reference["now_ms"]
    factor = drift_factor(reference_ms, estimated_reference)
    at_check, error_ms = point.estimate_ms * factor, point.error_ms * factor
    metrics = {"estimate_ms": at_check, "error_ms": error_ms, "measured_ms": measured,
               "measured_median_ms": timing.median_ms, "measured_std_ms": timing.std_ms,
               "rel_error": (at_check - measured) / measured,
               "within_error_bar": abs(at_check - measured) <= error_ms,
               "estimated_ms": point.estimate_ms, "estimated_rel_error": (point.estimate_ms - measured) / measured,
               "unscaled_ms": point.unscaled_ms, "unscaled_rel_error": (point.unscaled_ms - measured) / measured,
               "reference_ms": reference_ms, "estimate_reference_ms": estimated_reference, "drift_factor": factor,
               "precision": precision, "compile_s": compiled.compile_s, "converted_layers": compiled.converted_layers,
               "estimate_cache_hit": result.cache_hit}
    record = RunRecord(kind=CHECK_KIND, model=source.name, method="random", sparsity=sparsity,
                       block=format_block(block), latency_ms=measured, latency_std_ms=timing.std_ms, threads=threads,
                       settings={"seq_len": seq_len, "batch": batch, "repeats": repeats, "precision": precision},
                       metrics=metrics)
    store.add(record)
    progress(1.0, "done")
    return {"model": source.name, "sparsity": sparsity, "block": format_block(block), "seq_len": seq_len,
            "batch": batch, "threads": threads, "run_id": record.id, **metrics}
