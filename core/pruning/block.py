"""Block magnitude pruning: remove whole bs_r x bs_c blocks of a weight.

A block is ``bs_r`` rows (output features) by ``bs_c`` columns (input
features) of the ``(out, in)`` weight, the layout of TVM's BSR dense. Sparse
kernels skip whole blocks, so only block-structured zeros buy speed; a block's
score is its L2 (or L1) norm, and the lowest-scoring blocks go.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from core.errors import SparseLabError
from core.pruning.magnitude import scoped_keep_masks

NORMS = ("l2", "l1")
# The block shapes the pickers offer: TVM's BSR blocks (rows x 1) and column blocks (x4: TVM's int8 VNNI blocks).
BLOCK_CHOICES = ("1x1", "4x1", "8x1", "16x1", "32x1", "1x4", "4x4", "16x4")
_BLOCK = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_block(text: str) -> tuple[int, int]:
    """``'16x1'`` -> ``(16, 1)``: rows (output dim) x columns (input dim)."""
    match = _BLOCK.match(text or "")
    if not match or min(int(match[1]), int(match[2])) < 1:
        raise SparseLabError(f"Block shape '{text}' is not ROWSxCOLS with positive sizes (e.g. 16x1, 1x4, 4x4).")
    return int(match[1]), int(match[2])


def format_block(block: tuple[int, int]) -> str:
    return f"{block[0]}x{block[1]}"


def divides(shape: tuple[int, int], block: tuple[int, int]) -> bool:
    return shape[0] % block[0] == 0 and shape[1] % block[1] == 0


def check_divisible(name: str, shape: tuple[int, int], block: tuple[int, int]) -> None:
    if not divides(shape, block):
        raise SparseLabError(f"Block {format_block(block)} does not divide layer '{name}' of shape "
                             f"{shape[0]}x{shape[1]} (out x in); choose a block whose sizes divide it.")


def _blocked(weight, block: tuple[int, int]):
    """A ``(rows/bs_r, bs_r, cols/bs_c, bs_c)`` view: block (i, j) is ``[i, :, j, :]``."""
    rows, cols = weight.shape
    return weight.reshape(rows // block[0], block[0], cols // block[1], block[1])


def block_scores(weight, block: tuple[int, int], norm: str = "l2"):
    """One score per block, shaped ``(rows/bs_r, cols/bs_c)``."""
    blocks = _blocked(weight.detach().float(), block)
    if norm == "l1":
        return blocks.abs().sum(dim=(1, 3))
    return blocks.pow(2).sum(dim=(1, 3)).sqrt()


def expand_block_mask(block_mask, block: tuple[int, int]):
    """A per-block mask blown up to the weight's shape."""
    rows, cols = block_mask.shape
    return (block_mask[:, None, :, None].expand(rows, block[0], cols, block[1])
            .reshape(rows * block[0], cols * block[1]))


def block_masks(weights: Sequence, sparsity: float, block: tuple[int, int], scope: str = "layer",
                norm: str = "l2") -> list:
    """Keep-masks removing ``sparsity`` of the blocks, per layer or over all layers at once."""
    masks = scoped_keep_masks([block_scores(w, block, norm) for w in weights], sparsity, scope)
    return [expand_block_mask(mask, block) for mask in masks]


def block_sparsity(weight, block: tuple[int, int]) -> float | None:
    """Fraction of blocks that are entirely zero; None when the block does not divide the weight."""
    if not divides(tuple(weight.shape), block):
        return None
    nonzero = (_blocked(weight.detach(), block) != 0).any(dim=3).any(dim=1)
    return 1.0 - float(nonzero.float().mean())
