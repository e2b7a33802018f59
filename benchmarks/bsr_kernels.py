"""Every BSR schedule variant on BERT-base's Linear shapes, against PyTorch's dense Linear.

    .venv/bin/python benchmarks/bsr_kernels.py [--threads 1] [--tokens 128] [--repeats 20]

For each layer shape (768x768, 3072x768, 768x3072), block shape and sparsity:
the median ms of every candidate schedule (random block-sparse weights) and the
speedup of the fastest over F.linear. Same process, same thread count; on a
shared machine read the ratios.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.pruning.random_weights import random_block_sparse  # noqa: E402
from core.timing import measure  # noqa: E402
from core.tvm.bsr_kernel import BsrKernelShape, default_schedule  # noqa: E402
from core.tvm.tuning import schedule_timings  # noqa: E402

LAYERS = ((768, 768), (3072, 768), (768, 3072))  # (out, in)
CASES = (((1, 1), 0.95), ((4, 1), 0.9), ((8, 1), 0.9), ((16, 1), 0.9), ((32, 1), 0.9), ((16, 2), 0.9))


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{args.tokens} tokens, {args.threads} threads, medians of {args.repeats}")
    for n, k in LAYERS:
        x = torch.from_numpy(rng.standard_normal((args.tokens, k)).astype(np.float32))
        weight = torch.from_numpy(rng.standard_normal((n, k)).astype(np.float32))
        torch_ms = measure(lambda: torch.nn.functional.linear(x, weight), threads=args.threads,
                           repeats=args.repeats).median_ms
        print(f"\nlayer {n}x{k}: torch dense {torch_ms:.3f} ms")
        for block, sparsity in CASES:
            shape = BsrKernelShape(args.tokens, k, n, block)
            timings = schedule_timings(shape, random_block_sparse((n, k), sparsity, block), args.threads,
                                       args.repeats)
            best = min(timings, key=timings.get)
            cells = "  ".join(f"{s.label}={ms:.3f}" for s, ms in sorted(timings.items(), key=lambda kv: kv[1]))
            print(f"  {block[0]}x{block[1]} @{sparsity:.2f}: best {best.label} {timings[best]:.3f} ms "
                  f"({torch_ms / timings[best]:.1f}x; default {default_schedule(shape).label})  [{cells}]")


if __name__ == "__main__":
    main()
