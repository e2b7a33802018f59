"""Fixtures and weight helpers for the TVM tests (a pytest plugin of tests/conftest.py; helpers are imported).

Weights are prepared here with plain numpy, so these tests do not depend on
core.pruning: the engine takes any already-pruned torch model.
"""

import math
import os

import numpy as np
import pytest
import torch

from core.artifact_cache import ArtifactCache

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SEQ_LEN = 16


def random_block_sparse(shape, sparsity, block, seed=0) -> np.ndarray:
    """A float32 matrix with ``round(sparsity * blocks)`` all-zero blocks and no zeros elsewhere."""
    rng = np.random.default_rng(seed)
    grid = (shape[0] // block[0], shape[1] // block[1])
    keep = np.ones(grid[0] * grid[1], dtype=bool)
    keep[rng.choice(keep.size, round(sparsity * keep.size), replace=False)] = False
    mask = np.kron(keep.reshape(grid), np.ones(block, dtype=bool))
    values = rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
    return (values * mask).astype(np.float32)


def with_epilogue(y: np.ndarray, epilogue, bias: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """``y`` [m, n] with ``epilogue`` (core.tvm.epilogue) applied in float64: + bias, exact-erf GELU, + residual."""
    out = y.astype(np.float64)
    if epilogue.bias:
        out = out + bias
    if epilogue.gelu:
        out = 0.5 * out * (1.0 + np.vectorize(math.erf)(out / math.sqrt(2.0)))
    if epilogue.residual:
        out = out + residual
    return out


def magnitude_prune_(model, sparsity: float, skip: tuple[str, ...] = ()) -> None:
    """Zero the smallest ``sparsity`` of each Linear weight, in place (layers named in ``skip`` stay dense)."""
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and name not in skip:
                weight = module.weight.numpy()
                cutoff = np.quantile(np.abs(weight), sparsity)
                weight[np.abs(weight) < cutoff] = 0.0


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    """One artifact cache for a test module, so compiled libraries are shared by its tests."""
    return ArtifactCache(tmp_path_factory.mktemp("tvm-cache"), cap_bytes=10**10)
