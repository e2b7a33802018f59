"""m:n sparsity: at most m nonzeros in every n consecutive weights along the input dimension.

The pattern sparse tensor cores run at full speed (2:4), and what TF-MOT's
``sparsity_m_by_n`` produces: the weight is cut into groups of n input features
per output row and each group keeps its m largest magnitudes.
"""

from __future__ import annotations

import re

from core.errors import SparseLabError

_MN = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse_mn(text: str) -> tuple[int, int]:
    """``'2:4'`` -> ``(2, 4)``, refusing m > n and zero sizes."""
    match = _MN.match(text or "")
    if not match:
        raise SparseLabError(f"m:n pattern '{text}' is not M:N (e.g. 2:4).")
    m, n = int(match[1]), int(match[2])
    check_mn(m, n)
    return m, n


def check_mn(m: int, n: int) -> None:
    if not 1 <= m <= n:
        raise SparseLabError(f"m:n pattern {m}:{n} is impossible: it needs 1 <= m <= n "
                             "(m weights kept out of every n).")


def check_groups(name: str, shape: tuple[int, int], n: int) -> None:
    if shape[1] % n:
        raise SparseLabError(f"m:n groups of {n} do not divide the input dimension of layer '{name}' "
                             f"(shape {shape[0]}x{shape[1]}, out x in).")


def mn_mask(weight, m: int, n: int):
    """Keep-mask keeping the m largest magnitudes of every group of n along the input dimension."""
    import torch

    rows, cols = weight.shape
    groups = weight.detach().abs().reshape(rows, cols // n, n)
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(-1, groups.topk(m, dim=-1).indices, True)
    return mask.reshape(rows, cols)


def mn_sparsity(m: int, n: int) -> float:
    return 1.0 - m / n
