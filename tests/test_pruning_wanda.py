"""Wanda on bert-tiny: exact sparsity, per-row comparison groups, |W| x ||X|| scores, m:n and blocks."""

import pytest
import torch

from core.errors import SparseLabError
from core.model_source import resolve
from core.pruning.apply import PruneConfig, prune_model
from core.pruning.calibration import calibration
from core.pruning.methods.wanda import per_row_drop
from core.pruning.selection import select_linear_layers
from tests.fixtures_pruning import block_nonzero, random_weight

CALIBRATION = 24


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return resolve("bert-tiny").load_tokenizer()


def _prune(model, tokenizer, calibration_input=None, **params):
    config = PruneConfig.from_params({"method": "wanda", "calibration": CALIBRATION, **params})
    return prune_model(model, config, tokenizer=tokenizer, calibration=calibration_input)


@pytest.mark.parametrize("sparsity", [0.5, 0.37])
def test_per_row_drop_is_exact_and_even(sparsity):
    scores = random_weight(10, 16).abs()
    drop = per_row_drop(scores, sparsity)
    assert int(drop.sum()) == round(sparsity * 160)
    per_row = drop.sum(dim=1)
    assert int(per_row.max() - per_row.min()) <= 1
    for row in range(10):  # each row drops its lowest scores
        kept, dropped = scores[row][~drop[row]], scores[row][drop[row]]
        assert dropped.numel() == 0 or float(dropped.max()) <= float(kept.min())


def test_unstructured_sparsity_is_exact_and_follows_weight_times_input_norm(tiny_model, tokenizer):
    inputs = calibration(tokenizer, CALIBRATION, seed=0)
    dense = tiny_model.encoder.layer[0].attention.self.query.weight.detach().clone()
    rows = []
    state = {}
    hook = tiny_model.encoder.layer[0].attention.self.query.register_forward_hook(
        lambda _m, i, _o: rows.append(i[0][state["mask"].bool()]))
    with torch.no_grad():
        for batch in inputs.batches:
            state["mask"] = batch["attention_mask"]
            tiny_model(**batch)
    hook.remove()
    x = torch.cat(rows).double()
    _prune(tiny_model, tokenizer, inputs, sparsity=0.5)
    for name, module in select_linear_layers(tiny_model).items():
        assert int((module.weight == 0).sum()) == module.weight.numel() // 2, name
    # the first layer sees the dense embeddings: its mask is |W| * ||X_j|| per row, lowest half dropped
    expected = ~per_row_drop(dense.double().abs() * x.norm(dim=0)[None, :], 0.5)
    assert torch.equal(tiny_model.encoder.layer[0].attention.self.query.weight != 0, expected)
    assert torch.equal(tiny_model.encoder.layer[0].attention.self.query.weight[expected], dense[expected])


def test_mn_and_blocks(tiny_model, tokenizer):
    _prune(tiny_model, tokenizer, structure="mn", mn="1:4")
    for module in select_linear_layers(tiny_model).values():
        rows, cols = module.weight.shape
        assert int((module.weight != 0).reshape(rows, cols // 4, 4).sum(-1).max()) <= 1
    model = resolve("bert-tiny").load_model()
    result = _prune(model, tokenizer, structure="block", block="16x4", sparsity=0.75)
    assert result.config.label == "wanda 16x4" and result.sparsity == 0.75
    for module in select_linear_layers(model).values():
        counts = block_nonzero(module.weight, (16, 4))
        assert bool(((counts == 0) | (counts == 64)).all()) and float((counts == 0).float().mean()) == 0.75


@pytest.mark.parametrize("params, calibration_input, message", [
    ({"sparsity": 1.0}, None, "outside"),
    ({"sparsity": 0.5, "structure": "block", "block": "5x5"}, None, "does not divide"),
    ({"sparsity": 0.5}, [], "empty"),
    ({"sparsity": 0.5}, ["", "  "], "empty"),
])
def test_bad_input_is_refused_before_any_weight_changes(tiny_model, tokenizer, params, calibration_input, message):
    before = {n: m.weight.clone() for n, m in select_linear_layers(tiny_model).items()}
    with pytest.raises(SparseLabError, match=message):
        _prune(tiny_model, tokenizer, calibration_input, **params)
    assert all(torch.equal(before[n], m.weight) for n, m in select_linear_layers(tiny_model).items())
