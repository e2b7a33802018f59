"""Issue 12 part 2: int8 kernels in TVM (VNNI), per kernel and on BERT-base.

    flock /tmp/sparselab-bench.lock .venv/bin/python benchmarks/tvm_int8.py [--threads 2] [--rounds 15]
        [--kernels-only | --model-only] [--json OUT]

Kernels: one BERT-base layer shape at a time (128 tokens; 768x768, 3072x768,
768x3072 as out x in), fp32 dense / fp32 BSR 16x1 @90% / int8 dense / int8 BSR
16x4, 4x4, 1x4 @90%, all timed in interleaved rounds (each round times every
kernel once, best of a few calls), medians over rounds.

Model: BERT-base, batch 1, seq 128: TVM dense fp32, TVM dense int8, TVM BSR int8
@90% 16x4 and 1x4 (random what-if weights), TVM BSR fp32 @90% 16x1; every build
timed in interleaved rounds; cosine of each int8 build against the fp32 PyTorch
model with the same weights. Peers measured elsewhere (issue 12): OpenVINO int8
17.6 ms, ONNX Runtime dynamic int8 28.5 ms.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.tvm import (  # noqa: E402
    amx_bsr_kernel,
    bsr_format,
    bsr_kernel,
    dense_kernel,
    int8_bsr_kernel,
    int8_dense_kernel,
    quantize,
)
from core.tvm.target import calling_thread_beside_workers, host_target, set_runtime_threads  # noqa: E402

SHAPES = ((768, 768), (3072, 768), (768, 3072))  # (out, in)
TOKENS = 128
SPARSITY = 0.9
OPENVINO_INT8_MS = 17.6
ORT_INT8_MS = 28.5


def _random_block_sparse(shape, sparsity, block, seed=0):
    rng = np.random.default_rng(seed)
    grid = (shape[0] // block[0], shape[1] // block[1])
    keep = np.ones(grid[0] * grid[1], dtype=bool)
    keep[rng.choice(keep.size, round(sparsity * keep.size), replace=False)] = False
    mask = np.kron(keep.reshape(grid), np.ones(block, dtype=bool))
    return (rng.standard_normal(shape) * mask).astype(np.float32)


def _compile(func, target):
    import tvm

    return tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target)["main"]


def _kernel_cases(n, k, target):
    """name -> (callable, args) for one layer shape."""
    import tvm

    device = tvm.cpu()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((TOKENS, k)).astype(np.float32)

    def tensors(*arrays):
        return [tvm.runtime.tensor(np.ascontiguousarray(a), device) for a in arrays]

    cases = {}
    weight = rng.standard_normal((n, k)).astype(np.float32)
    schedule = dense_kernel.default_schedule(TOKENS, n)
    cases["fp32 dense"] = (_compile(dense_kernel.dense_matmul(TOKENS, k, n, schedule), target),
                           tensors(x, dense_kernel.pack_weight(weight, schedule.lanes), np.zeros((TOKENS, n), "f4")))
    bsr = bsr_format.to_bsr(_random_block_sparse((n, k), SPARSITY, (16, 1)), (16, 1))
    shape = bsr_kernel.BsrKernelShape(TOKENS, k, n, (16, 1))
    schedule = bsr_kernel.default_schedule(shape)
    cases["fp32 BSR 16x1"] = (_compile(bsr_kernel.bsr_matmul(shape, schedule), target),
                              tensors(x.T, bsr.data, bsr.indices, bsr.indptr,
                                      np.zeros(bsr_kernel.output_shape(shape, schedule), "f4")))
    u8, params = quantize.quantize_activation(x)
    xp, x_params = quantize.pack_activation(u8, TOKENS), quantize.padded_params(params, TOKENS)
    cases["int8 quantize X"] = (_compile(quantize.quantize_activation_kernel(TOKENS, k, TOKENS), target),
                                tensors(x, xp, x_params))
    packed = int8_dense_kernel.prepare_weight(weight)
    for tile, panels in ((8, 1), (4, 2), (8, 2)):
        schedule = int8_dense_kernel.Int8DenseSchedule(tile, panels, True)
        cases[f"int8 dense {tile}x{16 * panels}"] = (
            _compile(int8_dense_kernel.dense_int8_matmul(TOKENS, k, n, schedule), target),
            tensors(xp, x_params, packed.packed, packed.scale, packed.sums, np.zeros((TOKENS, n), "f4")))
    if amx_bsr_kernel.use_amx():
        tiles = amx_bsr_kernel.prepare_dense(weight)
        cases["int8 dense AMX"] = (
            _compile(amx_bsr_kernel.amx_dense_matmul(TOKENS, k, n), target),
            tensors(xp, x_params, tiles.packed, tiles.scale, tiles.sums, np.zeros((TOKENS, n), "f4")))
    for block in ((16, 4), (4, 4), (1, 4)):
        sparse = int8_bsr_kernel.to_int8_bsr(_random_block_sparse((n, k), SPARSITY, block), block)
        shape = int8_bsr_kernel.Int8BsrShape(TOKENS, k, n, block)
        schedule = int8_bsr_kernel.default_schedule(shape)
        cases[f"int8 BSR {block[0]}x{block[1]}"] = (
            _compile(int8_bsr_kernel.bsr_int8_matmul(shape, schedule), target),
            tensors(xp, x_params, sparse.data, sparse.indices, sparse.indptr, sparse.scale, sparse.sums,
                    np.zeros(int8_bsr_kernel.output_shape(shape, schedule), "f4")))
        if block == (16, 4) and amx_bsr_kernel.use_amx():  # the same weights on AMX tiles
            packed = amx_bsr_kernel.pack(sparse)
            cases["int8 BSR 16x4 AMX"] = (
                _compile(amx_bsr_kernel.amx_bsr_matmul(TOKENS, k, n), target),
                tensors(xp, x_params, packed.apack, packed.cols, packed.chunk_ptr, packed.scale, packed.sums,
                        np.zeros((TOKENS, n), "f4")))
    return cases


def _interleaved(cases: dict, rounds: int, calls: int) -> dict:
    """name -> median over rounds of the best-of-``calls`` time (ms); every round times every case once."""
    samples = {name: [] for name in cases}
    for fn, args in cases.values():  # warm-up
        fn(*args)
    for _ in range(rounds):
        for name, (fn, args) in cases.items():
            best = float("inf")
            for _ in range(calls):
                start = time.perf_counter()
                fn(*args)
                best = min(best, time.perf_counter() - start)
            samples[name].append(best * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}


def kernels(threads: int, rounds: int) -> dict:
    target = host_target(threads)
    set_runtime_threads(threads)
    results = {}
    for n, k in SHAPES:
        cases = _kernel_cases(n, k, target)
        with calling_thread_beside_workers():
            results[f"{TOKENS}x{k}->{n}"] = _interleaved(cases, rounds, calls=5)
    return results


def print_kernels(results: dict, threads: int) -> None:
    names = list(next(iter(results.values())))
    print(f"\nPer kernel, {TOKENS} tokens, {threads} thread(s), sparse at {SPARSITY:.0%}: ms (x vs fp32 dense)\n")
    print("| kernel | " + " | ".join(f"tokens x in -> out: {shape}" for shape in results) + " |")
    print("| --- |" + " --- |" * len(results))
    for name in names:
        cells = [f"{r[name]:.3f} ({r['fp32 dense'] / r[name]:.1f}x)" for r in results.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")


MODEL_BUILDS = (  # label, precision, block (None: dense), what-if block for the weights, AMX (None: if the CPU has it)
    ("TVM dense fp32", "fp32", None, None, None),
    ("TVM dense int8", "int8", None, None, None),
    ("TVM BSR int8 16x4 @90%", "int8", (16, 4), "16x4", None),
    ("TVM BSR int8 1x4 @90%", "int8", (1, 4), "1x4", None),
    ("TVM BSR fp32 16x1 @90%", "fp32", (16, 1), "16x1", None),
)
AMX_OFF_BUILDS = (  # on an AMX CPU, the same int8 builds with AMX turned off (VNNI kernels), for comparison
    ("TVM dense int8, VNNI", "int8", None, None, False),
    ("TVM BSR int8 16x4 @90%, VNNI", "int8", (16, 4), "16x4", False),
)


def model(name: str, threads: int, seq_len: int, rounds: int) -> dict:
    import torch

    from core.model_source import resolve
    from core.pruning.apply import PruneConfig, pruned_copy
    from core.tvm.benchmark import cosine_rows
    from core.tvm.bsr_rewrite import RewriteOptions
    from core.tvm.compile import CompileOptions, compile_model
    from core.tvm.relax_import import InputShape, example_inputs

    dense_model = resolve(name).load_model()
    shape = InputShape(1, seq_len)
    inputs = example_inputs(shape, dense_model.config.vocab_size)
    builds = {}
    for label, precision, block, whatif, amx in MODEL_BUILDS + (AMX_OFF_BUILDS if amx_bsr_kernel.use_amx() else ()):
        weights = dense_model if whatif is None else pruned_copy(
            dense_model, PruneConfig.from_params({"method": "random", "sparsity": SPARSITY, "block": whatif}))
        compiled = compile_model(weights, CompileOptions(shape, threads, RewriteOptions(block, precision=precision,
                                                                                        amx=amx)), name=name)
        runner = compiled.runner()
        with torch.no_grad():
            expected = weights(**inputs)[0].numpy()
        cosine = cosine_rows(runner.run(inputs), expected)
        builds[label] = {"runner": runner, "args": runner.to_device(inputs), "cosine": cosine,
                         "compile_s": compiled.compile_s, "converted": compiled.converted_layers,
                         "layers": len(compiled.layers), "cache_hit": compiled.cache_hit}
        del weights
    set_runtime_threads(threads)
    samples = {label: [] for label in builds}
    for build in builds.values():
        for _ in range(3):
            build["runner"].run_device(build["args"])
    with calling_thread_beside_workers():
        for _ in range(rounds):
            for label, build in builds.items():
                start = time.perf_counter()
                build["runner"].run_device(build["args"])
                samples[label].append((time.perf_counter() - start) * 1e3)
    return {label: {"median_ms": statistics.median(samples[label]), "min_ms": min(samples[label]),
                    "cosine_vs_fp32": build["cosine"], "compile_s": build["compile_s"],
                    "converted": f"{build['converted']}/{build['layers']}", "cache_hit": build["cache_hit"]}
            for label, build in builds.items()}


def print_model(results: dict, name: str, threads: int, seq_len: int, rounds: int) -> None:
    fp32_dense = results["TVM dense fp32"]["median_ms"]
    print(f"\n{name}, batch 1, seq {seq_len}, {threads} threads, median of {rounds} interleaved rounds\n")
    print("| build | median ms | min ms | vs TVM dense fp32 | vs OpenVINO int8 (17.6 ms) | vs ORT int8 (28.5 ms) "
          "| cosine vs fp32 | BSR layers | compile s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, r in results.items():
        ms = r["median_ms"]
        cosine = "-" if r["cosine_vs_fp32"] is None else f"{r['cosine_vs_fp32']:.5f}"
        print(f"| {label} | {ms:.1f} | {r['min_ms']:.1f} | {fp32_dense / ms:.2f}x | {OPENVINO_INT8_MS / ms:.2f}x | "
              f"{ORT_INT8_MS / ms:.2f}x | {cosine} | {r['converted']} | {r['compile_s']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bert-base")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--kernel-threads", type=int, default=1)
    parser.add_argument("--kernels-only", action="store_true")
    parser.add_argument("--model-only", action="store_true")
    parser.add_argument("--json", help="also write every number to this file")
    args = parser.parse_args()
    out = {}
    if not args.model_only:
        out["kernels"] = kernels(args.kernel_threads, args.rounds)
        print_kernels(out["kernels"], args.kernel_threads)
    if not args.kernels_only:
        out["model"] = model(args.model, args.threads, args.seq_len, args.rounds)
        print_model(out["model"], args.model, args.threads, args.seq_len, args.rounds)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
