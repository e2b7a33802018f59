"""Model size at a what-if sparsity: fp32, int8 dense, and int8 in SparseLab's sparse storage format.

fp32 is 4 bytes per parameter; int8 dense stores Linear weights in 1 byte and
every other parameter in fp32. The sparse format's bytes per weight are
measured, not modelled: one random ``block``-sparse 768x768 layer is quantized
to int8 and stored the way ``core.storage.sparselab_format`` stores it (nonzero
values and one-byte position gaps, each stream gzip level 9), and that
bytes-per-weight is scaled to the model's pruned weights. Block structure
matters (16x1 gaps repeat, gzip finds them), which a formula would miss.
Per-layer scales and HDF5 overhead (a few KB per layer) are left out.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass

import numpy as np

from core.storage.gap_coding import encode_positions
from core.whatif.cached import cached_json
from core.whatif.rest_of_model import ModelProfile

REFERENCE_LAYER = (768, 768)
GZIP_LEVEL = 9  # sparselab_format.GZIP


@dataclass(frozen=True)
class SizeEstimate:
    sparsity: float
    block: str
    fp32_bytes: int
    int8_dense_bytes: int
    int8_sparse_bytes: int

    def as_dict(self) -> dict:
        return asdict(self)


def sparse_bytes_per_weight(sparsity: float, block: tuple[int, int], cache=None) -> float:
    """Stored bytes per weight element (values + gaps, gzip'd) of a random int8 ``block``-sparse layer."""
    from core.pruning.random_weights import random_block_sparse

    def compute() -> dict:
        weight = random_block_sparse(REFERENCE_LAYER, sparsity, block, seed=0)
        scale = np.abs(weight).max() / 127 if weight.any() else 1.0
        quantized = np.round(weight / scale).astype(np.int8).ravel()
        positions = np.flatnonzero(quantized)
        stored = len(zlib.compress(quantized[positions].tobytes(), GZIP_LEVEL)) + \
            len(zlib.compress(encode_positions(positions).tobytes(), GZIP_LEVEL))
        return {"bytes_per_weight": stored / quantized.size}

    data, _ = cached_json("whatif-storage", {"layer": list(REFERENCE_LAYER), "sparsity": sparsity,
                                             "block": list(block)}, compute, cache=cache,
                          description=f"sparse storage bytes/weight at {sparsity} {block}")
    return data["bytes_per_weight"]


def model_sizes(profile: ModelProfile, sparsity: float, block: tuple[int, int], pruned_weights: int,
                cache=None) -> SizeEstimate:
    """Sizes when ``pruned_weights`` of the model's Linear weights are ``block``-sparse at ``sparsity``."""
    other = profile.param_count - profile.linear_weight_count
    int8_dense = 4 * other + profile.linear_weight_count
    sparse = int8_dense - pruned_weights + pruned_weights * sparse_bytes_per_weight(sparsity, block, cache)
    return SizeEstimate(sparsity, f"{block[0]}x{block[1]}", 4 * profile.param_count, int8_dense, round(sparse))
