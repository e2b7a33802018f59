import pytest
import torch

from core.errors import SparseLabError
from core.pruning.apply import PruneConfig, prune_model
from core.pruning.m_by_n import mn_mask, parse_mn
from tests.fixtures_pruning import random_weight


@pytest.mark.parametrize("m, n", [(2, 4), (1, 4), (4, 8), (3, 4)])
def test_exactly_m_nonzeros_in_every_group_of_n_along_the_input(m, n):
    weight = random_weight(48, 64, seed=8)
    pruned = weight * mn_mask(weight, m, n)
    groups = pruned.reshape(48, 64 // n, n)
    assert ((groups != 0).sum(dim=-1) == m).all()
    # the kept ones are each group's largest magnitudes
    kept_min = groups.abs().masked_fill(groups == 0, float("inf")).min(dim=-1).values
    dropped_max = weight.reshape(48, 64 // n, n).abs().masked_fill(groups != 0, 0).max(dim=-1).values
    assert (kept_min >= dropped_max).all()


def test_groups_run_along_the_input_dimension():
    weight = torch.tensor([[1.0, 2.0, 3.0, 4.0],
                           [4.0, 3.0, 2.0, 1.0]])
    assert mn_mask(weight, 2, 4).tolist() == [[False, False, True, True], [True, True, False, False]]


@pytest.mark.parametrize("text, message", [("3:2", "impossible"), ("0:4", "impossible"), ("2-4", "not M:N")])
def test_bad_patterns_are_refused(text, message):
    with pytest.raises(SparseLabError, match=message):
        parse_mn(text)


def test_prune_model_2_4_on_bert_tiny(tiny_model):
    result = prune_model(tiny_model, PruneConfig(method="mn", m=2, n=4))
    assert result.sparsity == 0.5 and result.config.label == "2:4"
    weight = tiny_model.encoder.layer[1].output.dense.weight
    assert ((weight.reshape(128, -1, 4) != 0).sum(dim=-1) == 2).all()


def test_group_size_that_does_not_divide_the_input_is_refused(tiny_model):
    with pytest.raises(SparseLabError, match=r"groups of 3 do not divide .*'encoder\.layer\.0\.attention\.self"):
        prune_model(tiny_model, PruneConfig(method="mn", m=1, n=3))


def test_m_by_n_refuses_a_conflicting_sparsity():
    with pytest.raises(SparseLabError, match="prunes exactly 0.5"):
        PruneConfig.from_params({"method": "mn", "mn": "2:4", "sparsity": 0.9})
