"""Issue 13: a sensitivity recipe against uniform pruning at the same estimated latency, measured.

    .venv/bin/python benchmarks/recipe.py [--model minilm] [--uniform 0.9] [--block 1x1] [--json OUT]

1. Each selected Linear layer of the model is pruned alone (magnitude, per layer) at every sparsity of
   ``--sparsities`` and scored against the dense model on the evaluation pairs
   (``core.pruning.sensitivity.layer_sensitivity``).
2. The What-if kernel tables (this CPU, ``--tokens`` tokens, ``--threads``; measured once and cached) give
   each layer's time saved at each sparsity (``speed_gains``).
3. Uniform pruning at ``--uniform`` saves some estimated time; the recipe is the per-layer sparsity with the
   smallest summed fidelity drop whose estimated saving is at least as large (``matching_recipe``).
4. Both are applied to the dense model (magnitude, each layer on its own) and measured on the evaluation
   pairs: mean cosine, min cosine, paraphrase retrieval against the dense model.
Target: the recipe's measured fidelity is higher at the same (or lower) estimated latency. The
estimate sums the kernel tables' times of the pruned layers (the rest of the model is the same in both).
Runs in a temporary SparseLab home unless ``--keep`` (the kernel tables are then measured afresh).
"""

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--uniform", type=float, default=0.9)
    parser.add_argument("--sparsities", default="0.5,0.7,0.8,0.9,0.95,0.98,0.99")
    parser.add_argument("--block", default="1x1", help="the BSR block whose kernel tables estimate the speed")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="use your SparseLab home (cached tables)")
    parser.add_argument("--json")
    args = parser.parse_args()
    if not args.keep:
        os.environ["SPARSELAB_HOME"] = tempfile.mkdtemp(prefix="sparselab-recipe-")

    from core.pruning.block import parse_block
    from core.pruning.sensitivity import apply_recipe, layer_sensitivity, matching_recipe, recipe_gain, speed_gains
    from core.pruning.session import PruneSession
    from core.whatif.kernel_timings import dense_kernel_ms

    sparsities = sorted(float(s) for s in args.sparsities.split(","))
    if args.uniform not in sparsities:
        sparsities = sorted({*sparsities, args.uniform})
    block = parse_block(args.block)
    session = PruneSession.open(args.model)
    rows = layer_sensitivity(args.model, sparsities, session=session,
                             progress=lambda f, m: print(f"[sensitivity] {f:.2f} {m}", file=sys.stderr, flush=True))
    modules = dict(session.model.named_modules())
    shapes = {name: tuple(modules[name].weight.shape) for name in dict.fromkeys(r["name"] for r in rows)}
    print(f"[tables] {len(set(shapes.values()))} layer shapes, block {args.block}", file=sys.stderr, flush=True)
    gains = speed_gains(shapes, sparsities, block, tokens=args.tokens, threads=args.threads)
    dense_ms = sum(count * dense_kernel_ms(args.tokens, shape, args.threads)[0].ms  # one table per shape
                   for shape, count in Counter(shapes.values()).items())

    uniform = {name: args.uniform for name in shapes}
    target = recipe_gain(uniform, gains)
    levels, budget = matching_recipe(rows, gains, target)
    results = {}
    for label, chosen in ((f"uniform {args.uniform:g}", uniform), ("recipe", levels)):
        scored, sparsity = apply_recipe(session, chosen)
        results[label] = {"linear_ms": dense_ms - recipe_gain(chosen, gains), "sparsity": sparsity,
                          **scored.as_dict(), "levels": chosen}
    session.restore()

    print(f"{args.model}, magnitude per layer; speed from the What-if kernel tables ({args.block} BSR, "
          f"{args.tokens} tokens, {args.threads} threads): the pruned layers' summed kernel time, dense "
          f"{dense_ms:.2f} ms; fidelity on the evaluation pairs against the dense model\n")
    print("| pruning | est. Linear ms | sparsity | mean cosine | min cosine | retrieval |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, row in results.items():
        print(f"| {label} | {row['linear_ms']:.2f} | {row['sparsity']:.1%} | {row['mean_cosine']:.3f} | "
              f"{row['min_cosine']:.3f} | {row['retrieval_accuracy']:.3f} |")
    spread = Counter(f"{s:g}" for s in levels.values())
    print(f"\nrecipe: {', '.join(f'{n} layers at {s}' for s, n in sorted(spread.items(), key=lambda kv: float(kv[0])))}"
          f" (fidelity budget {budget:.4f} of summed single-layer drops)")
    recipe_row, uniform_row = results["recipe"], results[f"uniform {args.uniform:g}"]
    met = (recipe_row["mean_cosine"] > uniform_row["mean_cosine"]
           and recipe_row["linear_ms"] <= uniform_row["linear_ms"] + 1e-9)
    print(f"target (recipe: higher measured fidelity at the same estimated latency): {'met' if met else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "results": results, "budget": budget}, indent=1))


if __name__ == "__main__":
    main()
