"""Helpers shared by the pruning tests (the tiny_model fixture lives in conftest.py)."""

import pytest
import torch


def random_weight(rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    """Normal weights with no exact zeros or ties, like a trained layer's."""
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))


def block_nonzero(weight: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """Per block: how many of its elements are nonzero."""
    rows, cols = weight.shape
    return (weight != 0).reshape(rows // block[0], block[0], cols // block[1], block[1]).sum(dim=(1, 3))




@pytest.fixture
def one_torch_thread():
    """Small per-column updates (SparseGPT, Wanda): one thread is faster than two on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
