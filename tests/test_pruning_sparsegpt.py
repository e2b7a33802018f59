"""SparseGPT on bert-tiny: exact sparsity, m:n groups, whole blocks, lower reconstruction error than
magnitude on the calibration inputs, and refusals before any weight changes."""

import pytest
import torch

from core.errors import SparseLabError
from core.model_source import resolve
from core.pruning.apply import PruneConfig, prune_model
from core.pruning.block import block_masks
from core.pruning.calibration import calibration
from core.pruning.m_by_n import mn_mask
from core.pruning.magnitude import magnitude_masks
from core.pruning.methods import get_method
from core.pruning.methods.sparsegpt import sparsegpt_weight
from core.pruning.selection import select_linear_layers
from tests.fixtures_pruning import block_nonzero

CALIBRATION = 24  # sentences: enough for the invariants, fast


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return resolve("bert-tiny").load_tokenizer()


def _prune(model, tokenizer, **params):
    config = PruneConfig.from_params({"method": "sparsegpt", "calibration": CALIBRATION, **params})
    return prune_model(model, config, tokenizer=tokenizer)


@pytest.mark.parametrize("sparsity", [0.5, 0.3])
def test_unstructured_sparsity_is_exact_per_layer(tiny_model, tokenizer, sparsity):
    result = _prune(tiny_model, tokenizer, sparsity=sparsity)
    for name, module in select_linear_layers(tiny_model).items():
        zeros = int((module.weight == 0).sum())
        assert zeros == round(sparsity * module.weight.numel()), name
    assert result.calibration == {"source": "corpus", "samples": CALIBRATION,
                                  "tokens": result.calibration["tokens"]}
    assert result.as_dict()["calibration"]["source"] == "corpus"


def test_mn_groups_keep_at_most_m(tiny_model, tokenizer):
    result = _prune(tiny_model, tokenizer, structure="mn", mn="2:4")
    assert result.config.label == "sparsegpt 2:4" and result.config.target_sparsity == 0.5
    for module in select_linear_layers(tiny_model).values():
        rows, cols = module.weight.shape
        assert int((module.weight != 0).reshape(rows, cols // 4, 4).sum(-1).max()) <= 2


@pytest.mark.parametrize("block", [(16, 4), (1, 4)])
def test_blocks_are_all_zero_or_kept(tiny_model, tokenizer, block):
    _prune(tiny_model, tokenizer, structure="block", block=f"{block[0]}x{block[1]}", sparsity=0.5)
    size = block[0] * block[1]
    for module in select_linear_layers(tiny_model).values():
        counts = block_nonzero(module.weight, block)
        assert bool(((counts == 0) | (counts == size)).all())
        assert float((counts == 0).float().mean()) == 0.5


def _layer_inputs(model, tokenizer, name):
    """The real-token rows the dense model feeds layer ``name`` on the calibration sentences."""
    module = dict(model.named_modules())[name]
    rows = []
    inputs = calibration(tokenizer, CALIBRATION * 2, seed=5)
    state = {}
    handle = module.register_forward_hook(lambda _m, i, _o: rows.append(i[0][state["mask"].bool()]))
    with torch.no_grad():
        for batch in inputs.batches:
            state["mask"] = batch["attention_mask"]
            model(**batch)
    handle.remove()
    return torch.cat(rows).double()


@pytest.mark.parametrize("structure, params", [("unstructured", {"sparsity": 0.6}), ("mn", {"mn": "2:4"}),
                                               ("block", {"block": "16x4", "sparsity": 0.5})])
def test_reconstruction_error_beats_magnitude_at_the_same_sparsity(tiny_model, tokenizer, structure, params):
    name = "encoder.layer.1.intermediate.dense"
    x = _layer_inputs(tiny_model, tokenizer, name)
    weight = dict(tiny_model.named_modules())[name].weight.detach()
    config = PruneConfig.from_params({"method": "sparsegpt", "structure": structure, **params})
    pruned = sparsegpt_weight(weight, 2 * x.T @ x / x.shape[0], config)
    sparsity = float((pruned == 0).float().mean())
    if structure == "block":
        keep = block_masks([weight], sparsity, (16, 4))[0]
    elif structure == "mn":
        keep = mn_mask(weight, 2, 4)
    else:
        keep = magnitude_masks([weight], sparsity)[0]
    magnitude = weight.double() * keep
    dense_out = x @ weight.double().T
    error = float(((x @ pruned.T - dense_out) ** 2).sum())
    magnitude_error = float(((x @ magnitude.T - dense_out) ** 2).sum())
    assert sparsity == pytest.approx(config.target_sparsity, abs=1e-4)
    assert error < 0.8 * magnitude_error


@pytest.mark.parametrize("params, calibration_input, message", [
    ({"sparsity": 1.0}, None, "outside"),
    ({"sparsity": -0.1}, None, "outside"),
    ({"sparsity": 0.5, "structure": "block", "block": "3x1"}, None, "does not divide"),
    ({"structure": "mn", "mn": "2:3"}, None, "do not divide"),
    ({"sparsity": 0.6, "structure": "mn", "mn": "2:4"}, None, "cannot reach"),
    ({"sparsity": 0.5, "structure": "diagonal"}, None, "Unknown structure"),
    ({"sparsity": 0.5, "calibration": 0}, None, "positive"),
    ({"sparsity": 0.5, "damping": -1}, None, "Damping"),
    ({"sparsity": 0.5}, [], "empty"),
    ({"sparsity": 0.5, "calibration": 5000}, None, "too short"),
])
def test_bad_input_is_refused_before_any_weight_changes(tiny_model, tokenizer, params, calibration_input, message):
    before = {n: m.weight.clone() for n, m in select_linear_layers(tiny_model).items()}
    with pytest.raises(SparseLabError, match=message):
        config = PruneConfig.from_params({"method": "sparsegpt", **params})
        prune_model(tiny_model, config, tokenizer=tokenizer, calibration=calibration_input)
    assert all(torch.equal(before[n], m.weight) for n, m in select_linear_layers(tiny_model).items())


def test_config_round_trips_and_leaves_other_methods_as_they_were():
    config = PruneConfig.from_params({"method": "sparsegpt", "structure": "block", "block": "16x4",
                                      "sparsity": 0.5, "calibration": 64, "damping": 0.05})
    assert PruneConfig.from_params(config.as_params()) == config
    assert config.as_dict()["damping"] == 0.05 and config.label == "sparsegpt 16x4"
    mn = PruneConfig.from_params({"method": "sparsegpt", "structure": "mn", "mn": "2:4"})
    assert mn.sparsity == 0.5 and PruneConfig.from_params(mn.as_params()) == mn
    magnitude = PruneConfig.from_params({"method": "magnitude", "sparsity": 0.5})
    assert magnitude == PruneConfig(sparsity=0.5)
    assert not {"structure", "calibration", "damping"} & (set(magnitude.as_params()) | set(magnitude.as_dict()))
    assert get_method("sparsegpt").needs_calibration and not get_method("magnitude").needs_calibration


def test_the_method_alone_refuses_to_prune_without_the_model(tiny_model):
    with pytest.raises(SparseLabError, match="needs the model"):
        get_method("sparsegpt").prune(select_linear_layers(tiny_model), PruneConfig(method="sparsegpt"))


def test_a_model_without_tokenizer_gets_random_ids_and_says_so(tiny_model):
    config = PruneConfig.from_params({"method": "sparsegpt", "sparsity": 0.5, "calibration": 8})
    result = prune_model(tiny_model, config)
    assert result.calibration["source"] == "random-token-ids"
    assert result.sparsity == 0.5


@pytest.mark.parametrize("args, label", [
    (["--sparsity", "0.5", "--mn", "2:4"], "sparsegpt 2:4"),
    (["--sparsity", "0.5", "--block", "16x4"], "sparsegpt 16x4"),
    (["--sparsity", "0.5"], "sparsegpt"),
])
def test_prune_command_plumbs_structure_calibration_and_damping(args, label):
    import argparse

    from core.commands import prune as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    parsed = parser.parse_args(["--model", "bert-tiny", "--method", "sparsegpt", "--calibration", "8",
                                "--damping", "0.02", "--no-fidelity", *args])
    result = command.run(parsed)
    assert result["label"] == label and result["sparsity"] == 0.5
    assert result["calibration"]["samples"] == 8


def test_prune_command_refuses_both_mn_and_block():
    import argparse

    from core.commands import prune as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    with pytest.raises(SparseLabError, match="not both"):
        command.run(parser.parse_args(["--method", "wanda", "--sparsity", "0.5", "--mn", "2:4", "--block", "4x4"]))
