"""Issue 5 targets: BERT-base, batch 1, seq 128, PyTorch eager dense vs TVM dense vs TVM BSR.

    .venv/bin/python benchmarks/tvm_bert.py [--threads 2] [--repeats 20] [--model bert-base] [--json OUT]

Rows: 95% unstructured magnitude pruning as 1x1 BSR, and 90% random 16x1
what-if weights; then a sweep of one 768x768 layer over block shapes and
sparsities. Every figure comes from this one run (medians after warm-up); on a
shared machine, read the ratios, and rerun rows marked NOISY. Targets: TVM dense <= 1.25x PyTorch; 1x1 @95%
>= 3x faster than PyTorch dense; 16x1 @90% >= 4x.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.model_source import resolve  # noqa: E402
from core.pruning.apply import pruned_copy  # noqa: E402
from core.tvm.benchmark import compare  # noqa: E402
from core.tvm.kernel_sweep import sweep  # noqa: E402
from core.tvm.relax_import import InputShape  # noqa: E402
from core.tvm.request import TvmRequest  # noqa: E402

CASES = (("1x1 magnitude 95%", {"prune": "magnitude:0.95"}, (1, 1), 3.0),
         ("16x1 what-if 90%", {"whatif": 0.9}, (16, 1), 4.0))


def _noise(result: dict) -> str:
    """'NOISY' when a timing's std exceeds a quarter of its median (another process took a core)."""
    noisy = [name for name, t in result["timings"].items() if t["std_ms"] > 0.25 * t["median_ms"]]
    return f"NOISY: {', '.join(noisy)}" if noisy else "ok"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bert-base")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--json", help="also write every number to this file")
    args = parser.parse_args()

    dense_model = resolve(args.model).load_model()
    shape = InputShape(1, args.seq_len)
    results = {}
    print(f"{args.model}, batch 1, seq {args.seq_len}, {args.threads} threads, medians of {args.repeats}")
    print(f"{'case':<20} {'torch ms':>9} {'tvm dense':>10} {'tvm bsr':>9} {'dense/torch':>12} "
          f"{'torch/bsr':>10} {'target':>7} {'layers':>7} {'compile s':>10} {'peak MB':>8} allclose  noise")
    for label, request, block, target in CASES:
        config = TvmRequest(block=f"{block[0]}x{block[1]}", **request).prune_config()
        sparse_model = pruned_copy(dense_model, config)
        result = compare(dense_model, sparse_model, shape=shape, threads=args.threads, block=block,
                         repeats=args.repeats, name=args.model).as_dict()
        results[label] = result
        print(f"{label:<20} {result['torch_dense_ms']:9.1f} {result['tvm_dense_ms']:10.1f} "
              f"{result['tvm_sparse_ms']:9.1f} {result['tvm_dense_vs_torch']:12.2f} "
              f"{result['sparse_speedup_vs_torch']:10.2f} {'>=' + format(target, 'g'):>7} "
              f"{result['converted_layers']:>3}/{result['total_layers']:<3} "
              f"{result['compile_s']:10.1f} {result['peak_rss_mb']:8.0f} {str(result['allclose']):8}  "
              f"{_noise(result)}")
    if not args.no_sweep:
        print("\nkernel sweep: 768x768 layer, 128 tokens (torch dense F.linear vs TVM BSR)")
        points = sweep(threads=args.threads, repeats=args.repeats)
        results["sweep"] = [p.as_dict() for p in points]
        print(f"{'block':>6} {'sparsity':>8} {'schedule':>12} {'tvm ms':>8} {'torch ms':>9} {'speedup':>8}")
        for p in points:
            print(f"{p.block:>6} {p.sparsity:8.2f} {p.schedule:>12} {p.tvm_ms:8.3f} {p.torch_dense_ms:9.3f} "
                  f"{p.speedup:8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
