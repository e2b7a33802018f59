"""Issue 7 accuracy target: What-if estimate vs measured whole-model TVM latency, within 15%.

    .venv/bin/python benchmarks/whatif_accuracy.py [--model bert-base] [--seq-len 128] [--threads 2] [--rounds 3]

Every round is a cold start in a fresh artifact cache: the estimate measures
its kernels and rest of the model from nothing (timed: the under-60 s goal),
answers again from cache (the under-5 s goal), then each point (0.9, 16x1),
(0.95, 1x1), (0.8, 32x1) is checked right away with the real compile of the
random what-if model and its latency, the median of the quiet quarter of 20
runs 0.1 s apart (``core.whatif.check``, which records the pair in the run store).
Estimate and check of a round are minutes
apart, so they see the same host; the shared host itself drifts between rounds
(its L3 and memory are shared with other machines: the same library measured
31 ms and 58 ms an hour apart), which is why there are rounds and the verdict
takes the median error per point over them.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.artifact_cache import ArtifactCache  # noqa: E402
from core.whatif.check import check_point  # noqa: E402
from core.whatif.estimate import estimate  # noqa: E402
from core.whatif.request import WhatIfRequest  # noqa: E402

POINTS = ((0.9, (16, 1)), (0.95, (1, 1)), (0.8, (32, 1)))
TARGET = 0.15


def cold_round(args, number: int) -> dict:
    """One cold estimate, its warm repeat and the checks, in a fresh cache; prints the round's rows."""
    request = WhatIfRequest(args.model, tuple(sorted({s for s, _ in POINTS})),
                            tuple(dict.fromkeys(b for _, b in POINTS)), args.seq_len, 1, args.threads)
    with tempfile.TemporaryDirectory(prefix="whatif-accuracy-") as folder:
        cache = ArtifactCache(Path(folder), cap_bytes=2**40)
        start = time.perf_counter()
        cold = estimate(request, cache=cache)
        cold_s = time.perf_counter() - start
        warm = estimate(request, cache=cache)
        print(f"round {number}: cold estimate of {len(cold.estimates)} points {cold_s:.1f} s "
              f"(cache hit: {cold.cache_hit}), warm {warm.seconds:.2f} s (cache hit: {warm.cache_hit}); "
              f"TVM dense estimate {cold.dense_ms:.1f} ms, PyTorch eager {cold.torch_dense_ms:.1f} ms", flush=True)
        errors = {}
        for sparsity, block in POINTS:
            pair = check_point(args.model, sparsity, block, args.seq_len, args.threads, cache=cache)
            errors[sparsity, block] = pair["rel_error"]
            print(f"| {number} | {sparsity:g} {block[0]}x{block[1]} | {pair['estimate_ms']:.1f} ± "
                  f"{pair['error_ms']:.1f} ms | {pair['measured_ms']:.1f} ms | {pair['rel_error']:+.1%} |", flush=True)
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bert-base")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    print("| round | point | estimate | measured (quiet runs of 20) | relative error |")
    print("| --- | --- | --- | --- | --- |")
    rounds = [cold_round(args, number) for number in range(1, args.rounds + 1)]
    print(f"\n| point | median relative error over {args.rounds} rounds | range | within {TARGET:.0%} |")
    print("| --- | --- | --- | --- |")
    for point in POINTS:
        errors = sorted(errors[point] for errors in rounds)
        median = statistics.median(errors)
        print(f"| {point[0]:g} {point[1][0]}x{point[1][1]} | {median:+.1%} | {errors[0]:+.1%} to {errors[-1]:+.1%} "
              f"| {'yes' if abs(median) <= TARGET else 'no'} |")


if __name__ == "__main__":
    main()
