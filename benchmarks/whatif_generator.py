"""Time the vectorised what-if weight generator against a tutorial-style loop over blocks.

TVM's deploy_sparse tutorial builds random block-sparse weights with
``random_bsr_matrix``: it lists every block position with itertools.product and
fills the chosen blocks one by one in Python. ``tutorial_loop`` below is that
algorithm (written here for comparison, without the final scipy BSR
conversion); ``random_block_sparse`` is SparseLab's. Run:

    .venv/bin/python benchmarks/whatif_generator.py
"""

import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.pruning.random_weights import random_block_sparse  # noqa: E402
from core.timing import measure  # noqa: E402

CASES = [  # (rows, cols, sparsity, block): BERT-base's intermediate layer, then the loop's worst case
    (3072, 768, 0.95, (16, 1)),
    (3072, 768, 0.90, (1, 1)),
]


def tutorial_loop(shape, sparsity, block, seed=0):
    rows, cols = shape
    rng = np.random.default_rng(seed)
    matrix = np.zeros(shape, dtype="float32")
    num_blocks = int((1 - sparsity) * rows * cols / (block[0] * block[1])) + 1
    candidates = np.asarray(list(itertools.product(range(0, rows, block[0]), range(0, cols, block[1]))))
    chosen = candidates[rng.choice(candidates.shape[0], size=num_blocks, replace=False)]
    for r, c in chosen:
        matrix[r:r + block[0], c:c + block[1]] = rng.standard_normal(block)
    return matrix


def main() -> None:
    print(f"{'matrix':>10} {'sparsity':>8} {'block':>5} {'vectorised ms':>14} {'loop ms':>9} {'ratio':>7}")
    for rows, cols, sparsity, block in CASES:
        fast = measure(lambda: random_block_sparse((rows, cols), sparsity, block), threads=1, repeats=10, warmup=1)
        slow = measure(lambda: tutorial_loop((rows, cols), sparsity, block), threads=1, repeats=3, warmup=1)
        print(f"{rows}x{cols:<5} {sparsity:>8.2f} {block[0]}x{block[1]:<3} {fast.median_ms:>14.1f} "
              f"{slow.median_ms:>9.1f} {slow.median_ms / fast.median_ms:>6.1f}x")


if __name__ == "__main__":
    main()
