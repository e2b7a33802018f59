"""Choose each Linear shape's BSR schedule by measuring it, and cache the choice.

Per distinct (tokens, in, out, block) of the layers that will be converted, one
representative layer's real BSR arrays run every candidate schedule
(``bsr_kernel.candidate_schedules``); the fastest median wins. The choice is
stored in the artifact cache keyed by the shape, the layer's block density
(rounded to 1%), the candidates and the CPU, so it is measured once per machine.
The kernel alone is timed: a ``tokens`` choice also brings transposes around
it, which the whole-model numbers include and this does not.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from core.artifact_cache import ArtifactCache, ArtifactSpec, default_cache
from core.model_source import linear_layers
from core.tvm import bsr_format
from core.tvm.bsr_kernel import BsrKernelShape, BsrSchedule, build_kernel, candidate_schedules, output_shape
from core.tvm.bsr_rewrite import RewriteOptions, decide
from core.tvm.target import host_target, measure_tvm, set_runtime_threads

CHOICE_FILE = "schedule.json"


def layers_to_convert(model, options: RewriteOptions) -> dict[tuple[int, int], np.ndarray]:
    """One weight per (out, in) shape among the Linears the rewrite will turn into BSR."""
    chosen = {}
    for module in linear_layers(model).values():
        weight = module.weight.detach().numpy()
        if weight.shape not in chosen and decide(weight, options)[0] is not None:
            chosen[weight.shape] = weight
    return chosen


def schedule_timings(shape: BsrKernelShape, weight: np.ndarray, threads: int,
                     repeats: int = 10) -> dict[BsrSchedule, float]:
    """Median ms of every candidate schedule on ``weight``'s BSR form (X random, ``shape.m`` tokens)."""
    import tvm

    bsr = bsr_format.to_bsr(weight, shape.block)
    device, target = tvm.cpu(), host_target(threads)
    set_runtime_threads(threads)
    xt = np.random.default_rng(0).standard_normal((shape.k, shape.m)).astype(np.float32)
    arrays = [tvm.runtime.tensor(a, device) for a in (xt, bsr.data, bsr.indices, bsr.indptr)]
    timings = {}
    for schedule in candidate_schedules(shape):
        kernel = build_kernel(shape, schedule, target)
        out = tvm.runtime.tensor(np.zeros(output_shape(shape, schedule), np.float32), device)
        timings[schedule] = measure_tvm(lambda: kernel(*arrays, out), threads=threads, repeats=repeats).median_ms
    return timings


def tuned_schedules(model, *, block: tuple[int, int], threshold: float, tokens: int, threads: int,
                    cache: ArtifactCache | None = None) -> dict[BsrKernelShape, BsrSchedule]:
    """The measured-best schedule for each converted layer shape of ``model`` (cached per machine).

    ``tokens`` is what the kernels run on: ``bsr_kernel.padded_tokens(batch * seq_len)``."""
    cache = cache or default_cache()
    choices = {}
    for (n, k), weight in layers_to_convert(model, RewriteOptions(block, threshold)).items():
        shape = BsrKernelShape(tokens, k, n, block)
        density = round(float(bsr_format.block_mask(weight, block).mean()), 2)
        spec = ArtifactSpec(kind="tvm-bsr-schedule", libraries=("apache-tvm",), cpu_specific=True, inputs={
            "shape": [tokens, k, n, *block], "density": density, "threads": threads,
            "candidates": [s.label for s in candidate_schedules(shape)]})

        def build(directory: Path, shape=shape, weight=weight) -> None:
            timings = schedule_timings(shape, weight, threads)
            best = min(timings, key=timings.get)
            (directory / CHOICE_FILE).write_text(json.dumps({"variant": best.variant, "tile": best.tile}))

        path, _ = cache.get_or_build(spec, build, description=f"BSR schedule {tokens}x{k}x{n} {block}")
        choices[shape] = BsrSchedule(**json.loads((path / CHOICE_FILE).read_text()))
    return choices
