import pytest
import torch

from core.pruning.apply import PruneConfig, prune_model
from core.pruning.magnitude import keep_masks, magnitude_masks
from core.pruning.selection import select_linear_layers
from tests.fixtures_pruning import random_weight


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9, 0.95])
def test_per_layer_prunes_exactly_the_smallest(sparsity):
    weights = [random_weight(96, 64, seed=1), random_weight(64, 256, seed=2) * 5]
    for weight, keep in zip(weights, magnitude_masks(weights, sparsity, "layer")):
        assert int((~keep).sum()) == round(sparsity * weight.numel())
        if 0 < sparsity:
            assert weight[~keep].abs().max() <= weight[keep].abs().min()


def test_global_uses_one_threshold_and_hits_the_target():
    # a loud layer and a quiet one: a global threshold takes far more from the quiet one
    weights = [random_weight(128, 96, seed=3) * 10, random_weight(96, 128, seed=4)]
    masks = magnitude_masks(weights, 0.6, "global")
    total = sum(w.numel() for w in weights)
    assert abs(sum(int((~m).sum()) for m in masks) - 0.6 * total) <= 1
    kept = torch.cat([w[m].abs() for w, m in zip(weights, masks)])
    dropped = torch.cat([w[~m].abs() for w, m in zip(weights, masks)])
    assert dropped.max() <= kept.min()
    loud, quiet = [float((~m).float().mean()) for m in masks]
    assert quiet > 0.9 and loud < 0.4


def test_ties_are_broken_to_hit_the_exact_count():
    scores = [torch.ones(10, 10), torch.zeros(7)]
    masks = keep_masks(scores, 0.5)
    assert sum(int((~m).sum()) for m in masks) == round(0.5 * 107)
    assert not masks[1].any()  # the zeros go first


def test_prune_model_global_on_bert_tiny(tiny_model):
    result = prune_model(tiny_model, PruneConfig(method="magnitude", sparsity=0.7, scope="global"))
    layers = select_linear_layers(tiny_model)
    total = sum(m.weight.numel() for m in layers.values())
    zeros = sum(int((m.weight == 0).sum()) for m in layers.values())
    assert abs(zeros - 0.7 * total) <= 1
    assert result.sparsity == pytest.approx(zeros / total)
    assert len({round(l.sparsity, 3) for l in result.layers if l.selected}) > 1  # layers differ
    assert tiny_model.pooler.dense.weight.ne(0).all()


def test_prune_model_per_layer_on_bert_tiny(tiny_model):
    result = prune_model(tiny_model, PruneConfig(method="magnitude", sparsity=0.5))
    selected = [l for l in result.layers if l.selected]
    assert len(selected) == 12 and all(l.sparsity == 0.5 for l in selected)
    assert [l.name for l in result.layers if not l.selected] == ["pooler.dense"]


def test_pruning_again_counts_earlier_zeros():
    weight = random_weight(64, 64, seed=9)
    weight[:, :32] = 0  # half pruned already
    for sparsity in (0.25, 0.5, 0.75):
        keep = magnitude_masks([weight], sparsity)[0]
        assert int((~keep).sum()) == round(sparsity * weight.numel())
        assert weight[~keep].abs().max() <= weight[keep].abs().min()  # old zeros first, then the smallest
    assert not keep[:, :32].any() and keep[:, 32:].float().mean() == 0.5
