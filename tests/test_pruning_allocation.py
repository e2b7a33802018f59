"""Per-layer sparsity from measured sensitivity: the level grid, the allocation's optimum on hand-made drops, the
uniform fallback, and SparseGPT / Wanda on bert-tiny reaching the overall target with unequal layers."""

import pytest
import torch

from core.errors import SparseLabError
from core.model_source import resolve
from core.pruning.allocation import allocate, candidate_levels, layer_drops
from core.pruning.apply import PruneConfig, plan, prune_model
from core.pruning.calibration import calibration
from core.pruning.methods import get_method
from core.pruning.selection import select_linear_layers
from core.recovery.request import RecoveryRequest
from tests.fixtures_pruning import block_nonzero

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return resolve("bert-tiny").load_tokenizer()


def test_levels_step_by_005_around_the_target_within_bounds():
    assert candidate_levels(0.8) == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    assert candidate_levels(0.1) == [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4]
    assert candidate_levels(0.97) == [0.67, 0.72, 0.77, 0.82, 0.87, 0.92, 0.97]  # the target itself is kept


def test_the_cheap_layer_takes_the_zeros_of_the_fragile_one():
    drops = {"fragile": {0.3: 0.3, 0.5: 0.5, 0.7: 0.7}, "cheap": {0.3: 0.03, 0.5: 0.05, 0.7: 0.07}}
    assert allocate(drops, {"fragile": 10, "cheap": 10}, 0.5) == {"fragile": 0.3, "cheap": 0.7}


def test_sizes_weigh_the_target():
    # the big layer is cheap: pushing it to 0.7 pays for keeping the small fragile one dense-ish
    drops = {"small": {0.3: 0.1, 0.5: 0.5, 0.7: 0.9}, "big": {0.3: 0.0, 0.5: 0.1, 0.7: 0.3}}
    levels = allocate(drops, {"small": 10, "big": 30}, 0.5)
    assert levels == {"small": 0.3, "big": 0.7}
    assert (10 * levels["small"] + 30 * levels["big"]) / 40 >= 0.5


def test_uniform_is_kept_when_no_allocation_beats_it():
    same = {0.3: 0.3, 0.5: 0.5, 0.7: 0.7}  # identical straight lines: anything but uniform overshoots or ties
    assert allocate({"a": dict(same), "b": dict(same)}, {"a": 1, "b": 1}, 0.5) == {"a": 0.5, "b": 0.5}


def test_allocate_refuses_drops_without_the_target():
    with pytest.raises(SparseLabError, match="not measured at the target"):
        allocate({"a": {0.3: 0.1, 0.7: 0.2}}, {"a": 1}, 0.5)


def test_layer_drops_measures_every_level_and_restores_the_model(tiny_model, tokenizer):
    config = PruneConfig.from_params({"method": "sparsegpt", "sparsity": 0.3, "calibration": 16})
    layers = plan(tiny_model, config)
    before = {n: m.weight.clone() for n, m in layers.items()}
    batches = list(calibration(tokenizer, 16).batches)
    drops = layer_drops(tiny_model, layers, config, batches, get_method("sparsegpt").prune_weight)
    assert list(drops) == list(layers)
    assert all(list(by_level) == candidate_levels(0.3) for by_level in drops.values())
    assert all(by_level[0.0] == pytest.approx(0.0, abs=1e-6) for by_level in drops.values())  # nothing pruned
    assert all(torch.equal(before[n], m.weight) for n, m in layers.items())


@pytest.mark.parametrize("method, structure, block", [("sparsegpt", "block", (16, 1)), ("wanda", "unstructured", None)])
def test_sensitivity_allocation_reaches_the_target_overall_with_unequal_layers(tiny_model, tokenizer, method,
                                                                                 structure, block):
    params = {"method": method, "sparsity": 0.6, "calibration": 16, "structure": structure,
              "allocation": "sensitivity"}
    if block:
        params["block"] = f"{block[0]}x{block[1]}"
    result = prune_model(tiny_model, PruneConfig.from_params(params), tokenizer=tokenizer)
    layers = select_linear_layers(tiny_model)
    zeros = {n: int((m.weight == 0).sum()) / m.weight.numel() for n, m in layers.items()}
    total = sum(m.weight.numel() for m in layers.values())
    overall = sum(int((m.weight == 0).sum()) for m in layers.values()) / total
    assert 0.6 <= overall <= 0.6 + 0.05 and result.sparsity == pytest.approx(overall)
    assert len({round(z, 2) for z in zeros.values()}) > 1  # the layers differ
    assert all(round(z / 0.05) * 0.05 == pytest.approx(z, abs=0.01) for z in zeros.values())  # on the grid
    if block:
        size = block[0] * block[1]
        for module in layers.values():
            counts = block_nonzero(module.weight, block)
            assert bool(((counts == 0) | (counts == size)).all())


@pytest.mark.parametrize("params, message", [
    ({"method": "magnitude", "sparsity": 0.5, "allocation": "sensitivity"}, "works with .*not magnitude"),
    ({"method": "sparsegpt", "structure": "mn", "mn": "2:4", "allocation": "sensitivity"}, "every layer alike"),
    ({"method": "sparsegpt", "sparsity": 0.5, "allocation": "greedy"}, "Unknown allocation"),
])
def test_allocation_is_refused_where_it_cannot_apply(params, message):
    with pytest.raises(SparseLabError, match=message):
        PruneConfig.from_params(params)


def test_config_and_recovery_request_round_trip_the_allocation():
    config = PruneConfig.from_params({"method": "wanda", "sparsity": 0.5, "allocation": "sensitivity"})
    assert config.allocation == "sensitivity" and PruneConfig.from_params(config.as_params()) == config
    assert config.as_dict()["allocation"] == "sensitivity" and config.label == "wanda per-layer"
    request = RecoveryRequest.from_params({"method": "sparsegpt", "sparsity": 0.8, "block": "16x1",
                                           "allocation": "sensitivity", "minutes": 1})
    assert request.prune_config().allocation == "sensitivity"
    assert RecoveryRequest.from_params(request.as_params()) == request
    assert request.key_params()["allocation"] == "sensitivity"
    with pytest.raises(SparseLabError, match="not block"):
        RecoveryRequest.from_params({"method": "magnitude", "sparsity": 0.8, "block": "16x1",
                                     "allocation": "sensitivity", "minutes": 1})


def test_prune_command_refuses_an_allocation_the_method_cannot_take():
    import argparse

    from core.commands import prune as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--model", "bert-tiny", "--method", "magnitude", "--sparsity", "0.5",
                              "--allocation", "sensitivity", "--no-fidelity"])
    with pytest.raises(SparseLabError, match="works with .*not magnitude"):
        command.run(args)
