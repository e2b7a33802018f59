"""TVM dense and TVM BSR against the engines a user would run instead, on the same cores.

Both TVM builds are compiled and checked against PyTorch here; then every engine is timed in
a process of its own (core/peers: PyTorch eager, ONNX Runtime fp32 and int8, OpenVINO default
and int8, and the two TVM libraries), in rounds interleaved across engines, so the host's
drift hits all of them alike and no engine is ever timed beside another's thread pool. Before,
PyTorch was timed in the process where TVM's pool had run: 182 ms with a huge spread, against
171 +- 3 ms alone. Headline speedups are against the fastest peer (``best_peer``), PyTorch
eager being one more peer.

``precision="int8"`` compiles both TVM builds with the int8 kernels; int8 cannot
match PyTorch to 1e-4, so ``allclose`` then means: the mean cosine over output rows
against the fp32 PyTorch model with the same weights is >= 0.99 (``allclose_rule``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from core.errors import SparseLabError
from core.jobs import NO_PROGRESS, Progress, stage
from core.timing import Timing, settle
from core.tvm.bsr_rewrite import DEFAULT_THRESHOLD, RewriteOptions
from core.tvm.compile import CompiledModel, CompileOptions, compile_model
from core.tvm.relax_import import InputShape, example_inputs

ATOL = RTOL = 1e-4
TIMING_ROUNDS = 5  # interleaved rounds; each engine's ``repeats`` calls are spread over them
TVM_WORKER = "sparselab-tvm"
INT8_MIN_COSINE = 0.99


@dataclass(frozen=True)
class Comparison:
    torch_dense: Timing
    tvm_dense: Timing
    tvm_sparse: Timing
    dense: CompiledModel
    sparse: CompiledModel
    allclose: bool  # both TVM builds match PyTorch on their own weights
    max_abs_error: float  # TVM BSR vs PyTorch on the sparse model
    dense_max_abs_error: float  # TVM dense vs PyTorch on the dense model
    peak_rss_mb: float  # during the two compiles
    precision: str = "fp32"
    cosine_vs_fp32: float | None = None  # TVM BSR vs PyTorch fp32 on the sparse model: mean cosine over rows
    dense_cosine_vs_fp32: float | None = None
    peers: dict | None = None  # PeerReport.as_dict() of the run that timed everything (core/peers)

    @property
    def peer_rows(self) -> list[dict]:
        return [{key: result[key] for key in ("engine", "precision", "ms", "std_ms", "p10_ms", "p90_ms",
                                              "cosine_vs_fp32")} for result in (self.peers or {}).get("results", [])]

    @property
    def best_peer(self) -> dict | None:
        rows = self.peer_rows
        return min(rows, key=lambda row: row["ms"]) if rows else None

    @property
    def allclose_rule(self) -> str:
        return (f"mean cosine over output rows >= {INT8_MIN_COSINE} vs fp32 PyTorch" if self.precision == "int8"
                else f"numpy allclose rtol={RTOL} atol={ATOL} vs PyTorch")

    def as_dict(self) -> dict:
        base = self.torch_dense.median_ms
        best = self.best_peer
        return {
            "peers": self.peer_rows, "best_peer": best["engine"] if best else None,
            "best_peer_ms": best["ms"] if best else None,
            "speedup_vs_best_peer": best["ms"] / self.tvm_sparse.median_ms if best else None,
            "dense_vs_best_peer": best["ms"] / self.tvm_dense.median_ms if best else None,
            "skipped_peers": list((self.peers or {}).get("skipped", [])),
            "timing_rounds": (self.peers or {}).get("rounds"),
            "torch_dense_ms": self.torch_dense.median_ms, "tvm_dense_ms": self.tvm_dense.median_ms,
            "tvm_sparse_ms": self.tvm_sparse.median_ms,
            "torch_dense_std_ms": self.torch_dense.std_ms, "tvm_dense_std_ms": self.tvm_dense.std_ms,
            "tvm_sparse_std_ms": self.tvm_sparse.std_ms,
            "tvm_dense_vs_torch": self.tvm_dense.median_ms / base,
            "sparse_speedup_vs_torch": base / self.tvm_sparse.median_ms,
            "sparse_speedup_vs_tvm_dense": self.tvm_dense.median_ms / self.tvm_sparse.median_ms,
            "converted_layers": self.sparse.converted_layers, "total_layers": len(self.sparse.layers),
            "layers": [layer.as_dict() for layer in self.sparse.layers],
            "compile_s": self.sparse.compile_s, "dense_compile_s": self.dense.compile_s,
            "library_bytes": self.sparse.library_bytes, "dense_library_bytes": self.dense.library_bytes,
            "load_s": self.sparse.load_s, "cache_hit": self.sparse.cache_hit, "dense_cache_hit": self.dense.cache_hit,
            "allclose": self.allclose, "allclose_rule": self.allclose_rule, "precision": self.precision,
            "attention_precision": self.sparse.attention_precision,
            "cosine_vs_fp32": self.cosine_vs_fp32, "dense_cosine_vs_fp32": self.dense_cosine_vs_fp32,
            "max_abs_error": self.max_abs_error,
            "dense_max_abs_error": self.dense_max_abs_error, "peak_rss_mb": self.peak_rss_mb,
            "unscheduled": list(self.sparse.unscheduled + self.dense.unscheduled),
            "threads": self.torch_dense.threads, "repeats": self.torch_dense.repeats,
            "timings": {"torch_dense": self.torch_dense.as_dict(), "tvm_dense": self.tvm_dense.as_dict(),
                        "tvm_sparse": self.tvm_sparse.as_dict()},
        }


@contextmanager
def peak_rss() -> Iterator[list]:
    """Samples this process's resident memory every 50 ms; yields a list whose [0] is the peak in MB."""
    import psutil

    process, peak, done = psutil.Process(), [0.0], threading.Event()

    def sample():
        while True:
            peak[0] = max(peak[0], process.memory_info().rss / 2**20)
            if done.wait(0.05):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


def compare(dense_model, sparse_model, *, shape: InputShape, threads: int, block: tuple[int, int],
            threshold: float = DEFAULT_THRESHOLD, tune: bool = False, repeats: int = 20, warmup: int = 3,
            name: str = "model", cache=None, progress: Progress = NO_PROGRESS, precision: str = "fp32",
            peers: Sequence[str] | None = ()) -> Comparison:
    """Compile and check TVM dense on ``dense_model`` and TVM BSR on ``sparse_model`` (already pruned), then time
    them with the peer engines ``peers`` (None: every registered engine; PyTorch eager is always one) in
    interleaved rounds, ``repeats`` timed calls per engine. ``precision`` ("fp32" or "int8") applies to both
    TVM builds."""
    from core.peers.measure import measure_peers
    from core.peers.pool import WorkerSpec

    with peak_rss() as peak:
        dense = compile_model(dense_model, CompileOptions(shape, threads, RewriteOptions(block=None,
                                                                                         precision=precision)),
                              name=name, cache=cache, progress=stage(progress, 0.0, 0.3))
        sparse = compile_model(sparse_model, CompileOptions(shape, threads, RewriteOptions(block, threshold,
                                                                                           precision=precision), tune),
                               name=name, cache=cache, progress=stage(progress, 0.3, 0.6))
    progress(0.6, "checking both builds against PyTorch")
    inputs = example_inputs(shape, dense_model.config.vocab_size)
    checks = [_check(compiled.runner(), model, inputs, precision)
              for compiled, model in ((sparse, sparse_model), (dense, dense_model))]
    if not (dense.cache_hit and sparse.cache_hit):
        settle()
    engines = list(dict.fromkeys(["pytorch", *(PEER_ENGINES() if peers is None else peers)]))
    rounds = min(TIMING_ROUNDS, repeats)
    tvm_workers = [WorkerSpec(name=f"{TVM_WORKER}-{kind}", kind="tvm",
                              payload={"library": str(compiled.path), "precision": f"tvm {precision}"})
                   for kind, compiled in (("dense", dense), ("sparse", sparse))]
    report = measure_peers(dense_model, seq_len=shape.seq_len, batch=shape.batch, threads=threads, engines=engines,
                           rounds=rounds, calls_per_round=-(-repeats // rounds), warmup=warmup,
                           fidelity=len(engines) > 1, cache=cache, extra=tvm_workers,
                           progress=stage(progress, 0.65, 1.0)).as_dict()
    timed = {row["engine"]: Timing(**row["timing"]) for row in report["extra"]}
    missing = [spec.name for spec in tvm_workers if spec.name not in timed]
    if missing or not any(r["engine"] == "pytorch" for r in report["results"]):
        reasons = "; ".join(f"{s['engine']}: {s['reason']}" for s in report["skipped"])
        raise SparseLabError(f"Timing failed for {', '.join(missing) or 'pytorch'}: {reasons}")
    torch_row = next(r for r in report["results"] if r["engine"] == "pytorch")
    torch_timing = Timing(**torch_row["timing"])
    return Comparison(torch_timing, timed[f"{TVM_WORKER}-dense"], timed[f"{TVM_WORKER}-sparse"], dense, sparse,
                      all(ok for ok, _, _ in checks), checks[0][1], checks[1][1], peak[0], precision, checks[0][2],
                      checks[1][2], report)


def PEER_ENGINES() -> list[str]:  # noqa: N802 (the registry's engines, read when asked)
    from core.peers import engines

    return list(engines.ENGINES)


def cosine_rows(actual: np.ndarray, expected: np.ndarray) -> float:
    """Mean cosine similarity over output rows (the last axis is the feature axis)."""
    a = np.asarray(actual, np.float64).reshape(-1, actual.shape[-1])
    b = np.asarray(expected, np.float64).reshape(-1, expected.shape[-1])
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean((a * b).sum(axis=1) / np.maximum(norms, 1e-30)))


def _check(runner, model, inputs: dict, precision: str = "fp32") -> tuple[bool, float, float]:
    """(allclose, max abs error, mean row cosine) of the compiled model against fp32 PyTorch with the same
    weights; for int8 "allclose" is the cosine rule (>= INT8_MIN_COSINE)."""
    import torch

    from core.tvm.relax_import import forward_options

    with torch.no_grad():
        expected = model(**inputs, **forward_options(model))[0].numpy()
    actual = runner.run(inputs)
    cosine = cosine_rows(actual, expected)
    close = cosine >= INT8_MIN_COSINE if precision == "int8" else np.allclose(actual, expected, rtol=RTOL, atol=ATOL)
    return bool(close), float(np.abs(actual - expected).max()), cosine
