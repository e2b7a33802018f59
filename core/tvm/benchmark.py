"""PyTorch eager vs TVM dense vs TVM BSR on the same cores, and the request behind the CLI and the job.

Every latency goes through ``core.timing.measure`` with the same thread count;
the three are measured one after the other in one process (medians of
``repeats`` runs after ``warmup``), so on a shared machine compare ratios from
one run, not absolute times across runs.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from core.errors import SparseLabError
from core.timing import Timing, measure
from core.tvm.bsr_rewrite import DEFAULT_THRESHOLD, RewriteOptions
from core.tvm.compile import CompiledModel, CompileOptions, compile_model
from core.tvm.relax_import import InputShape, example_inputs
from core.tvm.target import measure_tvm

Progress = Callable[[float, str], None]
ATOL = RTOL = 1e-4


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
            "allclose": self.allclose, "max_abs_error": self.max_abs_error,
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
            name: str = "model", cache=None, progress: Progress | None = None) -> Comparison:
    """Time PyTorch eager on ``dense_model``, TVM dense on it, TVM BSR on ``sparse_model`` (already pruned)."""
    import torch

    progress = progress or (lambda fraction, message: None)

    def stage(start, end):
        return lambda f, message: progress(start + (end - start) * f, message)

    with peak_rss() as peak:
        dense = compile_model(dense_model, CompileOptions(shape, threads, RewriteOptions(block=None)), name=name,
                              cache=cache, progress=stage(0.0, 0.35))
        sparse = compile_model(sparse_model, CompileOptions(shape, threads, RewriteOptions(block, threshold), tune),
                               name=name, cache=cache, progress=stage(0.35, 0.7))
    inputs = example_inputs(shape, dense_model.config.vocab_size)
    sparse_runner, dense_runner = sparse.runner(), dense.runner()
    checks = [_check(runner, model, inputs) for runner, model in ((sparse_runner, sparse_model),
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
    return Comparison(torch_timing, dense_timing, sparse_timing, dense, sparse, all(ok for ok, _ in checks),
                      checks[0][1], checks[1][1], peak[0])


def _check(runner, model, inputs: dict) -> tuple[bool, float]:
    """(allclose, max abs error) of the compiled model against PyTorch with the same weights."""
    import torch

    with torch.no_grad():
        expected = model(**inputs)[0].numpy()
    actual = runner.run(inputs)
    return bool(np.allclose(actual, expected, rtol=RTOL, atol=ATOL)), float(np.abs(actual - expected).max())


def prepare_sparse(model, *, whatif: float | None = None, prune: str | None = None,
                   block: tuple[int, int] = (1, 1), seed: int = 0):
    """A copy of ``model`` with random ``block``-sparse what-if weights at ``whatif``, or pruned by
    ``prune`` = ``METHOD:SPARSITY`` (e.g. ``magnitude:0.95``, ``block:0.9`` with ``block``), via core.pruning."""
    from core.pruning import PruneConfig, prune_model

    if (whatif is None) == (prune is None):
        raise SparseLabError("Give exactly one of a what-if sparsity or a METHOD:SPARSITY pruning.")
    if whatif is not None:
        params = {"method": "random", "sparsity": whatif, "block": f"{block[0]}x{block[1]}", "seed": seed}
    else:
        method, _, sparsity = prune.partition(":")
        try:
            params = {"method": method, "sparsity": float(sparsity), "block": f"{block[0]}x{block[1]}"}
        except ValueError:
            raise SparseLabError(f"--prune takes METHOD:SPARSITY (e.g. magnitude:0.95), not '{prune}'.") from None
    sparse = copy.deepcopy(model)
    prune_model(sparse, PruneConfig.from_params(params))
    return sparse


def linear_sparsity(model) -> float:
    """Fraction of zeros over every Linear weight of ``model`` (including any the graph does not use)."""
    import torch

    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return float(sum(int((w == 0).sum()) for w in weights) / max(1, sum(w.numel() for w in weights)))


def record_runs(store, comparison: Comparison, *, model: str, block: str, sparsity: float, settings: dict) -> list[int]:
    """One run-store record per runtime (PyTorch dense, TVM dense, TVM BSR), sharing the settings."""
    from core.run_store import RunRecord

    summary = comparison.as_dict()
    shared = {key: summary[key] for key in ("converted_layers", "total_layers", "allclose", "max_abs_error",
                                            "tvm_dense_vs_torch", "sparse_speedup_vs_torch", "peak_rss_mb")}
    rows = (("pytorch-dense", comparison.torch_dense, 0.0, None, {}),
            ("tvm-dense", comparison.tvm_dense, 0.0, comparison.dense,
             {"compile_s": comparison.dense.compile_s, "cache_hit": comparison.dense.cache_hit}),
            ("tvm-bsr", comparison.tvm_sparse, sparsity, comparison.sparse,
             {"compile_s": comparison.sparse.compile_s, "cache_hit": comparison.sparse.cache_hit}))
    return [store.add(RunRecord(
        kind="tvm", model=model, method=method, sparsity=run_sparsity, block=block if method == "tvm-bsr" else None,
        size_bytes=compiled.library_bytes if compiled else None, latency_ms=timing.median_ms,
        latency_std_ms=timing.std_ms, threads=timing.threads, settings=settings,
        metrics={**shared, **extra, "timing": timing.as_dict()}))
        for method, timing, run_sparsity, compiled, extra in rows]


def run_request(params: dict, progress: Progress | None = None, store=None) -> dict:
    """The ``tvm`` CLI command and job: JSON-friendly params named like the CLI flags (core/commands/tvm.py).

    With ``weights`` (a pruned model folder) that model is both the sparse model and
    the dense baseline (PyTorch eager and dense TVM do not skip zeros); otherwise
    ``model`` is the dense baseline and ``whatif`` or ``prune`` makes the sparse one.
    """
    from core.model_source import resolve
    from core.pruning.block import parse_block
    from core.run_store import default_store
    from core.tvm.kernel_sweep import sweep

    progress = progress or (lambda fraction, message: None)
    if sum(params.get(key) is not None for key in ("weights", "whatif", "prune")) != 1:
        raise SparseLabError("Give exactly one of --weights DIR, --whatif SPARSITY or --prune METHOD:SPARSITY.")
    block = parse_block(params.get("block") or ("16x1" if params.get("whatif") is not None else "1x1"))
    threads, seq_len = int(params.get("threads") or 1), int(params.get("seq_len") or 128)
    threshold = DEFAULT_THRESHOLD if params.get("threshold") is None else float(params["threshold"])
    progress(0.0, "loading the model")
    source = resolve(params.get("weights") or params.get("model") or "bert-base")
    dense_model = source.load_model()
    sparse_model = dense_model if params.get("weights") else prepare_sparse(
        dense_model, whatif=params.get("whatif"), prune=params.get("prune"), block=block)
    comparison = compare(
        dense_model, sparse_model, shape=InputShape(int(params.get("batch") or 1), seq_len), threads=threads,
        block=block, threshold=threshold, tune=bool(params.get("tune")), repeats=int(params.get("repeats") or 20),
        warmup=int(params.get("warmup") or 3), name=source.name,
        progress=lambda fraction, message: progress(0.05 + 0.85 * fraction, message))
    block_label, sparsity = f"{block[0]}x{block[1]}", linear_sparsity(sparse_model)
    result = {**comparison.as_dict(), "model": source.name, "block": block_label, "seq_len": seq_len,
              "sparsity": sparsity}
    result["run_ids"] = record_runs(store or default_store(), comparison, model=source.name, block=block_label,
                                    sparsity=sparsity, settings=dict(params))
    if params.get("sweep"):
        progress(0.9, "sweeping block shapes and sparsities")
        result["sweep"] = [point.as_dict() for point in sweep(threads=threads)]
    progress(1.0, "done")
    return result
