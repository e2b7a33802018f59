import pytest
import torch

from core.errors import SparseLabError
from core.pruning.apply import PruneConfig, prune_model
from core.pruning.block import block_masks, block_scores, block_sparsity, parse_block
from tests.fixtures_pruning import block_nonzero, random_weight

BLOCKS = [(1, 1), (4, 1), (8, 1), (16, 1), (32, 1), (1, 4), (4, 4)]


@pytest.mark.parametrize("text, block", [("16x1", (16, 1)), ("1x4", (1, 4)), (" 4 X 4 ", (4, 4))])
def test_parse_block(text, block):
    assert parse_block(text) == block


@pytest.mark.parametrize("text", ["16", "0x4", "4x-1", "axb", ""])
def test_parse_block_refuses_nonsense(text):
    with pytest.raises(SparseLabError, match="ROWSxCOLS"):
        parse_block(text)


@pytest.mark.parametrize("block", BLOCKS)
def test_whole_blocks_are_removed_exactly(block):
    weight = random_weight(128, 64, seed=5)
    keep = block_masks([weight], 0.75, block)[0]
    pruned = weight * keep
    per_block = block_nonzero(pruned, block)
    size = block[0] * block[1]
    assert set(per_block.unique().tolist()) <= {0, size}  # every block all zero or all kept
    assert int((per_block == 0).sum()) == round(0.75 * per_block.numel())
    assert block_sparsity(pruned, block) == pytest.approx(0.75)
    assert float((pruned == 0).float().mean()) == pytest.approx(0.75)


def test_the_weakest_blocks_go_and_l1_differs_from_l2():
    # block 0: one big weight (L2 5, L1 5); block 1: four medium ones (L2 4, L1 8)
    weight = torch.tensor([[5.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0]])
    assert block_scores(weight, (1, 4), "l2").tolist() == [[5.0, 4.0]]
    l2 = block_masks([weight], 0.5, (1, 4), norm="l2")[0]
    l1 = block_masks([weight], 0.5, (1, 4), norm="l1")[0]
    assert l2[0, :4].all() and not l2[0, 4:].any()
    assert l1[0, 4:].all() and not l1[0, :4].any()


def test_global_block_scope_hits_the_target_over_all_layers():
    weights = [random_weight(64, 32, seed=6) * 3, random_weight(32, 64, seed=7)]
    masks = block_masks(weights, 0.5, (8, 1), scope="global")
    zero_blocks = [int((block_nonzero(w * m, (8, 1)) == 0).sum()) for w, m in zip(weights, masks)]
    assert sum(zero_blocks) == round(0.5 * (256 + 256))
    assert zero_blocks[1] > zero_blocks[0]  # the quiet layer gives up more


def test_block_sparsity_stat():
    weight = torch.ones(8, 4)
    weight[0:4, 0] = 0          # one whole 4x1 block
    weight[4:6, 1] = 0          # half a block: not a zero block
    assert block_sparsity(weight, (4, 1)) == pytest.approx(1 / 8)
    assert block_sparsity(weight, (3, 1)) is None


def test_non_dividing_block_is_refused_naming_layer_and_shape(tiny_model):
    before = tiny_model.encoder.layer[0].intermediate.dense.weight.clone()
    with pytest.raises(SparseLabError, match=r"5x1 does not divide layer 'encoder\.layer\.0\.attention\.self\.query' "
                                             r"of shape 128x128"):
        prune_model(tiny_model, PruneConfig(method="block", sparsity=0.5, block=(5, 1)))
    assert torch.equal(tiny_model.encoder.layer[0].intermediate.dense.weight, before)


def test_prune_model_block_reports_layer_stats(tiny_model):
    result = prune_model(tiny_model, PruneConfig(method="block", sparsity=0.9, block=(32, 1)))
    for layer in result.layers:
        expected = 0.9 if layer.selected else 0.0
        assert layer.block_sparsity == pytest.approx(expected, abs=1e-3)
        assert layer.sparsity == pytest.approx(expected, abs=1e-3)
