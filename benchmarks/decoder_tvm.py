"""Issue 15 target: GPT-2 small (12 blocks, hidden 768), batch 1, seq 128, TVM BSR 16x1 at 90% vs TVM dense.

    flock /tmp/sparselab-bench.lock .venv/bin/python benchmarks/decoder_tvm.py [--threads 2] [--repeats 20]
        [--model gpt2] [--task base|causal-lm] [--json OUT]

The model is the ``gpt2`` config architecture (GPT2Config() defaults, seeded random weights; its Conv1D
projections load as nn.Linear). Every Linear of the 12 repeated blocks gets random 16x1-block weights at 90%
block sparsity (the What-if weights: the speed does not depend on which blocks are zero); embeddings stay
dense. Both TVM builds are one full-sequence forward with the causal mask (use_cache=False), checked allclose
against PyTorch with the same weights; PyTorch eager (dense) and the ``--peers`` engines (ONNX Runtime fp32 and
dynamic int8 by default) are timed on the dense model in the same interleaved rounds, each in its own process.
Default task ``base`` (GPT2Model, last hidden state): the 50257x768 LM head is as many
multiply-adds as a third of the blocks' and stays dense in both builds, so ``--task causal-lm`` measures a
smaller ratio. Target: TVM BSR >= 3x faster than TVM dense. One markdown table; "quiet" is the median of
the fastest quarter of runs (core.timing); "paired" is the median over adjacent (dense, BSR) run pairs of
their ratio, which holds on a shared machine whose load drifts between the sequential timings.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.model_source import resolve  # noqa: E402
from core.pruning.apply import PruneConfig, pruned_copy  # noqa: E402
from core.tvm.benchmark import compare  # noqa: E402
from core.tvm.relax_import import InputShape, example_inputs  # noqa: E402
from core.tvm.target import measure_tvm  # noqa: E402

TARGET = 3.0


def paired_ratios(comparison, vocab_size: int, shape: InputShape, threads: int, pairs: int) -> list[float]:
    """TVM dense ms / TVM BSR ms of ``pairs`` adjacent runs (dense then BSR, back to back): both runs of a pair
    see the same load from other processes, so their ratio holds even when that load drifts."""
    import time

    dense, sparse = comparison.dense.runner(), comparison.sparse.runner()
    inputs = example_inputs(shape, vocab_size)
    dense_args, sparse_args = dense.to_device(inputs), sparse.to_device(inputs)
    ratios = []

    def pair():
        start = time.perf_counter()
        dense.run_device(dense_args)
        middle = time.perf_counter()
        sparse.run_device(sparse_args)
        ratios.append((middle - start) / (time.perf_counter() - middle))

    measure_tvm(pair, threads=threads, repeats=pairs, warmup=2, pause_s=0.05)
    return ratios[-pairs:]


def _noise(result: dict) -> str:
    noisy = [name for name, t in result["timings"].items() if t["std_ms"] > 0.25 * t["median_ms"]]
    return f"NOISY: {', '.join(noisy)}" if noisy else "ok"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt2")
    parser.add_argument("--task", default="base", choices=("base", "causal-lm"))
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--peers", default="onnxruntime-fp32,onnxruntime-int8",
                        help="peer engines timed in the same interleaved rounds (comma-separated; 'none')")
    parser.add_argument("--json", help="also write every number to this file")
    args = parser.parse_args()

    dense = resolve(args.model).load_model(args.task)
    config = PruneConfig(method="random", sparsity=args.sparsity, block=(16, 1))
    sparse = pruned_copy(dense, config)
    shape = InputShape(1, args.seq_len)
    peers = [] if args.peers == "none" else [p.strip() for p in args.peers.split(",") if p.strip()]
    comparison = compare(dense, sparse, shape=shape, threads=args.threads, block=(16, 1), repeats=args.repeats,
                         name=args.model, peers=peers)
    result = comparison.as_dict()
    ratios = sorted(paired_ratios(comparison, dense.config.vocab_size, shape, args.threads, args.repeats))
    paired = ratios[len(ratios) // 2]
    result["paired_ratios"] = ratios
    speedup = result["sparse_speedup_vs_tvm_dense"]
    print(f"{args.model} ({type(dense).__name__}), batch 1, seq {args.seq_len}, {args.threads} threads, "
          f"medians of {args.repeats}; BSR 16x1 random weights at {args.sparsity:g} in the repeated blocks\n")
    print("| build | median ms | quiet ms | p10-p90 ms | TVM dense / this (median) | TVM dense / this (quiet) "
          "| allclose (max abs err) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    rows = (("PyTorch eager, dense", "torch_dense", None),
            ("TVM dense", "tvm_dense", result["dense_max_abs_error"]),
            (f"TVM BSR 16x1 @ {args.sparsity:.0%}", "tvm_sparse", result["max_abs_error"]))
    dense_timing = result["timings"]["tvm_dense"]
    for label, key, error in rows:
        timing = result["timings"][key]
        check = "reference" if error is None else f"{result['allclose']} ({error:.1e})"
        print(f"| {label} | {timing['median_ms']:.1f} | {timing['quiet_ms']:.1f} | {timing['p10_ms']:.1f}-"
              f"{timing['p90_ms']:.1f} | {dense_timing['median_ms'] / timing['median_ms']:.2f}x | "
              f"{dense_timing['quiet_ms'] / timing['quiet_ms']:.2f}x | {check} |")
    for peer in result["peers"]:
        if peer["engine"] == "pytorch":
            continue
        print(f"| {peer['engine']} ({peer['precision']}) | {peer['ms']:.1f} | - | {peer['p10_ms']:.1f}-"
              f"{peer['p90_ms']:.1f} | {dense_timing['median_ms'] / peer['ms']:.2f}x | - | "
              f"cosine {peer['cosine_vs_fp32']:.4f} |")
    for skipped in result["skipped_peers"]:
        print(f"| {skipped['engine']} | skipped: {skipped['reason']} | | | | | |")
    quiet = dense_timing["quiet_ms"] / result["timings"]["tvm_sparse"]["quiet_ms"]
    print(f"\nBSR vs TVM dense: {speedup:.2f}x on medians, {quiet:.2f}x on quiet runs (median of the fastest "
          f"quarter), {paired:.2f}x median of {len(ratios)} paired runs (p10-p90 {ratios[len(ratios) // 10]:.2f}-"
          f"{ratios[(9 * len(ratios)) // 10]:.2f}); target >= {TARGET:g}x on the paired median: "
          f"{'met' if paired >= TARGET else 'NOT met'}. "
          f"BSR vs PyTorch: {result['sparse_speedup_vs_torch']:.2f}x; layers as BSR: "
          f"{result['converted_layers']}/{result['total_layers']}; compile {result['compile_s']:.0f} s (BSR), "
          f"{result['dense_compile_s']:.0f} s (dense); peak RSS {result['peak_rss_mb']:.0f} MB; "
          f"noise: {_noise(result)}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
