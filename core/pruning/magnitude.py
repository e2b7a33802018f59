"""Unstructured magnitude pruning: remove the weights closest to zero.

Per layer, every matrix loses the same fraction; global, one threshold over all
selected layers lets robust layers give up more than fragile ones. Both remove
exactly ``round(sparsity * count)`` scores: ties at the threshold are broken by
position, so the achieved sparsity never drifts from the target by more than
one element however many weights are equal (e.g. already zero).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SCOPES = ("layer", "global")


def keep_masks(scores: Sequence, sparsity: float) -> list:
    """Boolean keep-masks (shaped like ``scores``) dropping the lowest ``sparsity`` of all scores together."""
    import torch

    flat = torch.cat([s.reshape(-1) for s in scores])
    drop_count = round(sparsity * flat.numel())
    drop = torch.zeros_like(flat, dtype=torch.bool)
    if drop_count:
        threshold = _kth_smallest(flat.numpy(), drop_count)
        drop = flat < threshold
        ties = (flat == threshold).nonzero().squeeze(1)
        drop[ties[:drop_count - int(drop.sum())]] = True
    return [part.reshape(s.shape) for part, s in zip(torch.split(~drop, [s.numel() for s in scores]), scores)]


def _kth_smallest(scores: np.ndarray, k: int) -> float:
    """The k-th smallest of non-negative scores, in O(n) time and without an index per score.

    Zeros (weights pruned before, often most of them) are counted, not selected:
    np.partition slows down badly on many equal values, and torch.kthvalue
    allocates an int64 index for every score.
    """
    nonzero = scores[scores != 0]
    zeros = scores.size - nonzero.size
    if k <= zeros:
        return 0.0
    nonzero.partition(k - zeros - 1)
    return float(nonzero[k - zeros - 1])


def scoped_keep_masks(scores: Sequence, sparsity: float, scope: str) -> list:
    """``keep_masks`` per score tensor (scope ``layer``) or over all of them at once (``global``)."""
    if scope == "global":
        return keep_masks(scores, sparsity)
    return [keep_masks([s], sparsity)[0] for s in scores]


def magnitude_masks(weights: Sequence, sparsity: float, scope: str = "layer") -> list:
    return scoped_keep_masks([w.detach().float().abs() for w in weights], sparsity, scope)
