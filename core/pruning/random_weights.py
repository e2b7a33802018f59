"""What-if weights: a random block-sparse matrix, to time a model nobody has pruned yet.

Sparse kernels' speed depends on the sparsity pattern (how many blocks of which
shape), not on the values, so random block-sparse weights estimate what pruning
would buy before any pruning is done. TVM's deploy_sparse tutorial builds them
with ``random_bsr_matrix``, which lists every block in Python and fills the
chosen ones one by one; here the choice and the fill are single numpy
operations on a blocked view, so a 3072x768 layer takes milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.errors import SparseLabError
from core.pruning.block import check_divisible


def random_block_sparse(shape: tuple[int, int], sparsity: float, block: tuple[int, int] = (1, 1),
                        seed: int | Sequence[int] = 0, scale: float = 1.0, dtype=np.float32,
                        name: str = "matrix") -> np.ndarray:
    """A dense ``shape`` matrix whose ``round(sparsity * blocks)`` zero blocks are chosen at random.

    The kept blocks hold normal values with standard deviation ``scale``. The
    same arguments give the same matrix (``seed`` may be a sequence, e.g.
    ``(seed, layer_index)``, for independent layers); ``name`` is the layer
    that error messages name.
    """
    if not 0.0 <= sparsity < 1.0:
        raise SparseLabError(f"Sparsity {sparsity} is outside [0, 1).")
    rows, cols = shape
    check_divisible(name, (rows, cols), block)
    grid = (rows // block[0], cols // block[1])
    block_count = grid[0] * grid[1]
    kept = block_count - round(sparsity * block_count)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(block_count, size=kept, replace=False)
    blocks = np.zeros((block_count, block[0], block[1]), dtype=dtype)
    blocks[chosen] = rng.standard_normal((kept, block[0], block[1]), dtype=np.float32) * np.float32(scale)
    # (grid_r * grid_c, bs_r, bs_c) -> (grid_r, bs_r, grid_c, bs_c) -> (rows, cols)
    return blocks.reshape(grid[0], grid[1], block[0], block[1]).transpose(0, 2, 1, 3).reshape(rows, cols)
