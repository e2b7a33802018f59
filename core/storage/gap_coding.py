"""Positions of nonzeros as byte-sized gaps: the index stream of the SparseLab format.

A 94%-sparse matrix has a nonzero every ~16 elements, so the gap between
consecutive nonzeros (row-major, across rows) nearly always fits in one byte,
where CSR spends two bytes per index plus a row pointer. A gap g is written as
g // 255 bytes of 255 followed by g % 255, so any gap is representable, and
both directions are vectorised numpy.
"""

from __future__ import annotations

import numpy as np

ESCAPE = 255


def encode_positions(positions: np.ndarray) -> np.ndarray:
    """Strictly increasing flat positions -> uint8 gap stream."""
    positions = np.asarray(positions, dtype=np.int64)
    gaps = np.diff(positions, prepend=-1) - 1
    if gaps.size and gaps.min() < 0:
        raise ValueError("positions must be strictly increasing and non-negative")
    escapes = gaps // ESCAPE
    ends = np.cumsum(escapes + 1) - 1
    stream = np.full(int(ends[-1]) + 1 if ends.size else 0, ESCAPE, dtype=np.uint8)
    stream[ends] = (gaps % ESCAPE).astype(np.uint8)
    return stream


def decode_positions(stream: np.ndarray) -> np.ndarray:
    stream = np.asarray(stream, dtype=np.uint8)
    ends = np.flatnonzero(stream != ESCAPE)
    escapes = np.diff(ends, prepend=-1) - 1
    gaps = escapes * ESCAPE + stream[ends].astype(np.int64)
    return np.cumsum(gaps + 1) - 1


def decode_checked(stream: np.ndarray, count: int, shape: tuple[int, int], what: str) -> np.ndarray:
    """``decode_positions`` for an untrusted stream: exactly ``count`` positions, all inside a ``shape`` matrix.

    Raises SparseLabError naming ``what`` (the layer) when the stream ends mid-gap, holds a different
    number of positions than declared, or runs past the matrix's last row.
    """
    from core.errors import SparseLabError

    stream = np.asarray(stream, dtype=np.uint8)
    ends = np.flatnonzero(stream != ESCAPE)
    if ends.size != count:
        raise SparseLabError(f"Layer '{what}': its position stream encodes {ends.size} positions but the file "
                             f"declares {count} values. The file is damaged.")
    if stream.size and (not ends.size or ends[-1] != stream.size - 1):
        raise SparseLabError(f"Layer '{what}': its position stream ends in the middle of a gap (trailing escape "
                             f"bytes). The file is damaged.")
    positions = decode_positions(stream)
    rows, cols = shape
    if positions.size and positions[-1] >= rows * cols:
        last = int(positions[-1])
        raise SparseLabError(f"Layer '{what}': its position stream runs past the end of its rows: position {last} "
                             f"is row {last // max(cols, 1)}, but the {rows}x{cols} weight has rows 0..{rows - 1}. "
                             f"The file is damaged.")
    return positions
