import pytest
import torch

from core.errors import SparseLabError
from core.pruning.apply import PruneConfig, prune_model


@pytest.mark.parametrize("spec, label, pattern", [
    ("magnitude", "magnitude", None),
    ("magnitude:global", "magnitude global", None),
    ("block:4x4", "block 4x4", "4x4"),
    ("random:16x1", "random 16x1", "16x1"),
    ("mn:1:4", "1:4", "1:4"),
])
def test_specs_labels_and_patterns(spec, label, pattern):
    config = PruneConfig.from_spec(spec, {"sparsity": 0.75})
    assert config.label == label and config.pattern == pattern
    assert config.target_sparsity == 0.75


@pytest.mark.parametrize("params, message", [
    ({"method": "magnitude", "sparsity": 1.0}, r"outside \[0, 1\)"),
    ({"method": "block", "sparsity": -0.1}, r"outside \[0, 1\)"),
    ({"method": "magnitude"}, "Give a sparsity"),
    ({"method": "prune-it", "sparsity": 0.5}, "Unknown pruning method 'prune-it'"),
    ({"method": "mn", "scope": "global"}, "not available for mn"),
    ({"method": "mn", "mn": "5:4"}, "impossible"),
    ({"method": "block", "sparsity": 0.5, "block": "16"}, "ROWSxCOLS"),
])
def test_bad_params_are_refused(params, message):
    with pytest.raises(SparseLabError, match=message):
        PruneConfig.from_params(params)


def test_unknown_spec_names_its_method():
    with pytest.raises(SparseLabError, match="Unknown pruning method 'snip'"):
        PruneConfig.from_spec("snip:16x1", {"sparsity": 0.5})


def test_m_by_n_params_carry_their_own_sparsity():
    config = PruneConfig.from_params({"method": "mn", "mn": "1:4"})
    assert config.sparsity == config.target_sparsity == 0.75


def test_a_refused_request_leaves_the_model_untouched(tiny_model):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    # 512x1 blocks divide the 512x128 intermediate layers, which come first, but not the 128x512 output layers
    later_layer_fails = PruneConfig(method="block", sparsity=0.5, block=(512, 1),
                                    patterns=("intermediate", r"re:layer\.\d\.output\.dense"))
    with pytest.raises(SparseLabError, match="layer 'encoder.layer.0.output.dense'"):
        prune_model(tiny_model, later_layer_fails)
    with pytest.raises(SparseLabError):
        prune_model(tiny_model, PruneConfig(method="magnitude", sparsity=0.5, patterns=("intermediate", "nope")))
    assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())
