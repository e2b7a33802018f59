"""Checking an m:n pattern in a TFLite weight: at most m nonzeros in every n along the last dimension.

The last dimension of a TFLite CONV_2D / FULLY_CONNECTED weight is its input
channels (``[out, h, w, in]``, ``[out, in]``), where TF-MOT's m:n groups and
sparse hardware's 2:4 groups run. TF-MOT ships no checker usable on a .tflite
(``check_sparsity_m_by_n.py`` is not in the wheel), hence this one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class MnCheck:
    """Whether every group of n keeps at most m nonzeros; ``applies`` is False when n does not divide the depth."""

    m: int
    n: int
    applies: bool
    groups: int
    violations: int
    max_nonzeros: int

    @property
    def holds(self) -> bool | None:
        return self.violations == 0 if self.applies else None

    def as_dict(self) -> dict:
        return {**asdict(self), "holds": self.holds}


def check_m_by_n(weight: np.ndarray, m: int, n: int) -> MnCheck:
    """Count the groups of ``n`` consecutive last-dimension weights holding more than ``m`` nonzeros."""
    depth = weight.shape[-1] if weight.ndim else 0
    if depth == 0 or depth % n:
        return MnCheck(m, n, applies=False, groups=0, violations=0, max_nonzeros=0)
    nonzeros = np.count_nonzero(weight.reshape(-1, n), axis=-1)
    return MnCheck(m, n, applies=True, groups=int(nonzeros.size), violations=int((nonzeros > m).sum()),
                   max_nonzeros=int(nonzeros.max()))
