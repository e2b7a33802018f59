"""Fixtures and helpers shared by the pruning tests (imported explicitly; conftest.py is the lead's)."""

import copy
import os

import pytest
import torch

from core.model_source import resolve

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def random_weight(rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    """Normal weights with no exact zeros or ties, like a trained layer's."""
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))


def block_nonzero(weight: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """Per block: how many of its elements are nonzero."""
    rows, cols = weight.shape
    return (weight != 0).reshape(rows // block[0], block[0], cols // block[1], block[1]).sum(dim=(1, 3))


@pytest.fixture(scope="session")
def _tiny_dense():
    return resolve("bert-tiny").load_model()


@pytest.fixture
def tiny_model(_tiny_dense):
    """A fresh bert-tiny (2 layers, hidden 128, seeded weights) that a test may prune."""
    return copy.deepcopy(_tiny_dense)
