"""PyTorch eager vs TVM dense vs TVM BSR on the same cores: compile both, check both, time all three.

Every latency goes through ``core.timing.measure`` with the same thread count;
the three are measured one after the other in one process (medians of
``repeats`` runs after ``warmup``), so on a shared machine compare ratios from
one run, not absolute times across runs.

``precision="int8"`` compiles both TVM builds with the int8 kernels; int8 cannot
match PyTorch to 1e-4, so ``allclose`` then means: the mean cosine over output rows
against the fp32 PyTorch model with the same weights is >= 0.99 (``allclose_rule``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from core.jobs import NO_PROGRESS, Progress, stage
from core.timing import Timing, measure
from core.tvm.bsr_rewrite import DEFAULT_THRESHOLD, RewriteOptions
from core.tvm.compile import CompiledModel, CompileOptions, compile_model
from core.tvm.relax_import import InputShape, example_inputs
from core.tvm.target import measure_tvm

ATOL = RTOL = 1e-4
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

    @property
    def allclose_rule(self) -> str:
        return (f"mean cosine over output rows >= {INT8_MIN_COSINE} vs fp32 PyTorch" if self.precision == "int8"
                else f"numpy allclose rtol={RTOL} atol={ATOL} vs PyTorch")

    def as_dict(self) -> dict:
        base = self.torch_dense.median_ms
        return {
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
            name: str = "model", cache=None, progress: Progress = NO_PROGRESS, precision: str = "fp32") -> Comparison:
    """Time PyTorch eager on ``dense_model``, TVM dense on it, TVM BSR on ``sparse_model`` (already pruned);
    ``precision`` ("fp32" or "int8") applies to both TVM builds."""
    import torch

    with peak_rss() as peak:
        dense = compile_model(dense_model, CompileOptions(shape, threads, RewriteOptions(block=None,
                                                                                         precision=precision)),
                              name=name, cache=cache, progress=stage(progress, 0.0, 0.35))
        sparse = compile_model(sparse_model, CompileOptions(shape, threads, RewriteOptions(block, threshold,
                                                                                           precision=precision), tune),
                               name=name, cache=cache, progress=stage(progress, 0.35, 0.7))
    inputs = example_inputs(shape, dense_model.config.vocab_size)
    sparse_runner, dense_runner = sparse.runner(), dense.runner()
    checks = [_check(runner, model, inputs, precision) for runner, model in ((sparse_runner, sparse_model),
                                                                               (dense_runner, dense_model))]

    def torch_dense():
        with torch.no_grad():
            dense_model(**inputs)

    sparse_args, dense_args = sparse_runner.to_device(inputs), dense_runner.to_device(inputs)
    progress(0.75, "timing PyTorch (dense)")
    torch_timing = measure(torch_dense, threads=threads, repeats=repeats, warmup=warmup)
    progress(0.85, "timing TVM dense")
    dense_timing = measure_tvm(lambda: dense_runner.run_device(dense_args), threads=threads, repeats=repeats,
                           warmup=warmup)
    progress(0.95, "timing TVM sparse")
    sparse_timing = measure_tvm(lambda: sparse_runner.run_device(sparse_args), threads=threads, repeats=repeats,
                            warmup=warmup)
    progress(1.0, "done")
    return Comparison(torch_timing, dense_timing, sparse_timing, dense, sparse, all(ok for ok, _, _ in checks),
                      checks[0][1], checks[1][1], peak[0], precision, checks[0][2], checks[1][2])


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

    with torch.no_grad():
        expected = model(**inputs)[0].numpy()
    actual = runner.run(inputs)
    cosine = cosine_rows(actual, expected)
    close = cosine >= INT8_MIN_COSINE if precision == "int8" else np.allclose(actual, expected, rtol=RTOL, atol=ATOL)
    return bool(close), float(np.abs(actual - expected).max()), cosine
