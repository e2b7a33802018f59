"""Dense weight matrix <-> block compressed sparse row (BSR) arrays, in numpy.

A block is ``(rows, cols)`` of the weight ``W[out, in]``; a block is stored when
any of its entries is non-zero. ``data`` is laid out ``[nnz_blocks, cols, rows]``
(block transposed) so the kernel reads a block's column as one contiguous vector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BsrMatrix:
    shape: tuple[int, int]
    block: tuple[int, int]
    data: np.ndarray  # float32 [nnz_blocks, block_cols, block_rows]
    indices: np.ndarray  # int32 [nnz_blocks]: block column of each stored block
    indptr: np.ndarray  # int32 [block_rows_count + 1]

    @property
    def nnz_blocks(self) -> int:
        return int(self.indices.shape[0])

    @property
    def block_count(self) -> int:
        return (self.shape[0] // self.block[0]) * (self.shape[1] // self.block[1])

    @property
    def block_sparsity(self) -> float:
        return 1.0 - self.nnz_blocks / self.block_count

    def to_dense(self) -> np.ndarray:
        rows, cols = self.block
        grid = np.zeros((self.shape[0] // rows, self.shape[1] // cols, rows, cols), dtype=self.data.dtype)
        block_rows = np.repeat(np.arange(len(self.indptr) - 1), np.diff(self.indptr))
        grid[block_rows, self.indices] = self.data.transpose(0, 2, 1)
        return grid.transpose(0, 2, 1, 3).reshape(self.shape)


def divides(shape: tuple[int, int], block: tuple[int, int]) -> bool:
    return shape[0] % block[0] == 0 and shape[1] % block[1] == 0


def _blocks(weight: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    """``weight`` viewed as ``[block_row, block_col, rows, cols]``."""
    rows, cols = block
    out, inp = weight.shape
    return weight.reshape(out // rows, rows, inp // cols, cols).transpose(0, 2, 1, 3)


def block_mask(weight: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    """True for every block holding a non-zero entry, ``[block_row, block_col]``."""
    return _blocks(weight, block).any(axis=(2, 3))


def to_bsr(weight: np.ndarray, block: tuple[int, int]) -> BsrMatrix:
    """The BSR form of ``weight`` (whose shape ``block`` must divide)."""
    if not divides(weight.shape, block):
        raise ValueError(f"block {block} does not divide shape {weight.shape}")
    weight = np.ascontiguousarray(weight, dtype=np.float32)
    blocks = _blocks(weight, block)
    mask = blocks.any(axis=(2, 3))
    block_rows, block_cols = np.nonzero(mask)  # row-major: sorted by block row, then column
    indptr = np.zeros(mask.shape[0] + 1, dtype=np.int32)
    np.cumsum(mask.sum(axis=1), out=indptr[1:])
    data = np.ascontiguousarray(blocks[block_rows, block_cols].transpose(0, 2, 1))
    return BsrMatrix(shape=tuple(weight.shape), block=tuple(block), data=data,
                     indices=block_cols.astype(np.int32), indptr=indptr)
