import time

import numpy as np
import pytest
import torch

from core.errors import SparseLabError
from core.pruning.apply import PruneConfig, prune_model
from core.pruning.random_weights import random_block_sparse
from tests.fixtures_pruning import block_nonzero


@pytest.mark.parametrize("block", [(16, 1), (1, 4), (4, 4), (1, 1)])
def test_exact_block_sparsity_with_whole_blocks(block):
    matrix = random_block_sparse((256, 128), 0.9, block, seed=1)
    assert matrix.shape == (256, 128) and matrix.dtype == np.float32
    per_block = block_nonzero(torch.from_numpy(matrix), block)
    assert set(per_block.unique().tolist()) <= {0, block[0] * block[1]}
    assert int((per_block == 0).sum()) == round(0.9 * per_block.numel())


def test_seeded_and_reproducible():
    a = random_block_sparse((64, 64), 0.5, (4, 1), seed=3)
    assert np.array_equal(a, random_block_sparse((64, 64), 0.5, (4, 1), seed=3))
    assert not np.array_equal(a, random_block_sparse((64, 64), 0.5, (4, 1), seed=4))
    assert not np.array_equal(a, random_block_sparse((64, 64), 0.5, (4, 1), seed=(3, 1)))


def test_kept_values_have_the_requested_spread():
    matrix = random_block_sparse((512, 512), 0.5, (1, 1), seed=0, scale=0.02)
    assert matrix[matrix != 0].std() == pytest.approx(0.02, rel=0.02)


def test_bert_base_layer_in_under_0_2_s():
    best = min(_timed(lambda: random_block_sparse((3072, 768), 0.95, (16, 1), seed=i)) for i in range(3))
    assert best < 0.2


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@pytest.mark.parametrize("sparsity, block, message", [
    (1.0, (16, 1), r"outside \[0, 1\)"),
    (0.5, (7, 1), "7x1 does not divide"),
])
def test_bad_requests_are_refused(sparsity, block, message):
    with pytest.raises(SparseLabError, match=message):
        random_block_sparse((64, 64), sparsity, block)


def test_prune_model_random_replaces_selected_weights(tiny_model):
    original = tiny_model.encoder.layer[0].intermediate.dense.weight.detach().clone()
    result = prune_model(tiny_model, PruneConfig(method="random", sparsity=0.8, block=(16, 1), seed=7))
    weight = tiny_model.encoder.layer[0].intermediate.dense.weight.detach()
    assert all(l.block_sparsity == pytest.approx(0.8, abs=1e-2) for l in result.layers if l.selected)
    assert float(weight[weight != 0].std()) == pytest.approx(float(original.std()), rel=0.1)
    assert not torch.equal(weight != 0, original != 0)
