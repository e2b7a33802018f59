"""The dense engines a user would run instead, timed once per model, shape, threads and CPU, for the What-if chart.

``core.peers.measure.measure_peers`` times every chosen engine (PyTorch eager, ONNX
Runtime fp32/int8, OpenVINO default/f32/int8) in a process of its own, in
interleaved rounds. Its result is cached here in the artifact cache (per model
fingerprint, batch, sequence length, threads, the engine set and their library
versions, and the CPU), so a warm What-if reads it. Each engine's figure is the
median of its quiet rounds (``quiet_ms``), the same convention as the estimates.
The reference kernel (``core.whatif.reference``) is timed just before and just
after the peers, so an estimate can scale the peers to the host's speed now like
every other cached part. No sentence fidelity is computed (only the token
cosine against PyTorch fp32 on the timing input, which comes for free).
"""

from __future__ import annotations

from core.jobs import NO_PROGRESS, Progress
from core.model_source import ModelSource
from core.tvm.relax_import import InputShape
from core.whatif.cached import cached_json
from core.whatif.reference import reference_now

REFERENCE_REPEATS = 8  # before and after the peers each
ROUNDS = 5
CALLS_PER_ROUND = 6


def engine_names(value) -> tuple[str, ...]:
    """``None``/"all" -> every registered engine; "none"/""/[] -> none; else the named ones (validated)."""
    from core.errors import SparseLabError
    from core.peers.engines import ENGINES

    if value is None:
        return tuple(ENGINES)
    text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if names == ("all",):
        return tuple(ENGINES)
    if names in ((), ("none",)):
        return ()
    unknown = [n for n in names if n not in ENGINES]
    if unknown:
        raise SparseLabError(f"Unknown peer engine(s) {', '.join(unknown)}; choose from {', '.join(ENGINES)}, "
                             "or all / none.")
    return names


def peer_latencies(model: str, source: ModelSource, shape: InputShape, threads: int, engines: tuple[str, ...],
                   cache=None, progress: Progress = NO_PROGRESS) -> tuple[dict, bool]:
    """``({"peers": [{engine, library, precision, ms, median_ms, p10_ms, p90_ms, cosine_vs_fp32}], "skipped",
    "reference_ms"}, cache_hit)`` for ``engines`` (no engines: nothing measured, an empty result)."""
    from core.peers.engines import ENGINES

    if not engines:
        return {"peers": [], "skipped": [], "reference_ms": None}, True

    def compute() -> dict:
        from core.peers.measure import measure_peers

        before = reference_now(threads, cache, repeats=REFERENCE_REPEATS)
        report = measure_peers(model, seq_len=shape.seq_len,
                               batch=shape.batch, threads=threads, engines=list(engines), rounds=ROUNDS,
                               calls_per_round=CALLS_PER_ROUND, fidelity=False, cache=cache, progress=progress)
        after = reference_now(threads, cache, repeats=REFERENCE_REPEATS)
        peers = [{"engine": r.engine, "library": r.library, "precision": r.precision, "ms": r.quiet_ms,
                  "median_ms": r.ms, "p10_ms": r.p10_ms, "p90_ms": r.p90_ms, "cosine_vs_fp32": r.cosine_vs_fp32}
                 for r in report.results]
        return {"peers": peers, "skipped": list(report.skipped),
                "reference_ms": (before.ms + after.ms) / 2}

    libraries = tuple(sorted({lib for name in engines for lib in ENGINES[name].libraries} | {"torch", "transformers"}))
    inputs = {"model": source.fingerprint(), "batch": shape.batch, "seq_len": shape.seq_len, "threads": threads,
              "engines": sorted(engines), "rounds": ROUNDS, "calls_per_round": CALLS_PER_ROUND}
    return cached_json("whatif-peers", inputs, compute, libraries=libraries, cache=cache,
                       description=f"peers of {source.name}")
