import pytest

import core  # noqa: F401
from core.errors import SparseLabError
from core.tflite.models import build_model, input_depth, prunable_layers
from core.tflite.options import MODELS, PruneSpec
from core.tflite.pruning import check_prunable, wrap


def test_cnn_prunes_its_convs_and_hidden_dense_but_not_the_classifier():
    model = build_model(MODELS["digits-cnn"])
    assert [layer.name for layer in prunable_layers(model)] == ["conv1", "conv2", "dense1"]
    assert [input_depth(layer) for layer in prunable_layers(model)] == [1, 32, 256]


def test_mobilenet_satisfies_the_xnnpack_policy_which_wraps_only_1x1_convs():
    model = build_model(MODELS["digits-mobilenet"])
    wrapped = wrap(model, PruneSpec.parse("xnnpack:0.75"), steps=100)
    pruned = [layer.layer.name for layer in wrapped.layers if hasattr(layer, "pruning_vars")]
    assert pruned == [f"pointwise{i}" for i in range(1, 6)]


def test_xnnpack_policy_refuses_the_cnn_in_plain_words():
    with pytest.raises(SparseLabError, match="XNNPACK latency pruning policy cannot prune") as info:
        check_prunable(build_model(MODELS["digits-cnn"]), PruneSpec.parse("xnnpack:0.75"))
    assert "ZeroPadding2D" in str(info.value) and "digits-mobilenet" in str(info.value)


def test_mn_refused_when_no_layer_depth_fits():
    with pytest.raises(SparseLabError, match="input depth divisible by 7"):
        check_prunable(build_model(MODELS["digits-cnn"]), PruneSpec.parse("mn:3:7"))
