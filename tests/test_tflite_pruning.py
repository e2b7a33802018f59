import numpy as np
import pytest

from core.tflite.m_by_n import check_m_by_n
from core.tflite.options import PruneSpec
from core.tflite.pruning import prune, schedule, weight_sparsity
from tests.fixtures_keras import BATCH, SEED, tflite_layout

pytestmark = pytest.mark.slow  # trains and prunes the tiny CNN with TF-MOT


def kernels(model) -> dict:
    return {layer.name: layer.get_weights()[0] for layer in model.layers if layer.name in
            ("conv1", "conv2", "dense1", "logits")}


def test_dense_baseline_stays_dense_after_its_clone_is_pruned(tiny_cnn):
    for now, before in zip(tiny_cnn.dense.get_weights(), tiny_cnn.dense_weights_before_pruning):
        np.testing.assert_array_equal(now, before)
    assert weight_sparsity(tiny_cnn.dense) == 0.0
    assert weight_sparsity(tiny_cnn.pruned) > 0.4


def test_mn_pruning_gives_2_of_4_where_the_depth_allows_and_half_elsewhere(tiny_cnn):
    weights = kernels(tiny_cnn.pruned)
    for name in ("conv2", "dense1"):
        check = check_m_by_n(tflite_layout(weights[name]), 2, 4)
        assert check.holds and check.max_nonzeros == 2, name
    assert np.mean(weights["conv1"] == 0) == 0.5  # one input channel: 50% unstructured, as in the tutorial
    assert np.count_nonzero(weights["logits"]) == weights["logits"].size  # the classifier stays dense


def test_constant_pruning_reaches_its_target_in_every_pruned_layer(tiny_cnn):
    pruned = prune(tiny_cnn.dense, PruneSpec.parse("constant:0.7"), tiny_cnn.data, epochs=1, batch_size=BATCH,
                   seed=SEED)
    weights = kernels(pruned)
    for name in ("conv1", "conv2", "dense1"):
        assert abs(np.mean(weights[name] == 0) - 0.7) < 0.01, name
    assert np.count_nonzero(weights["logits"]) == weights["logits"].size


def test_polynomial_schedule_reaches_the_target_on_a_mask_update_within_the_run():
    plan = schedule(PruneSpec.parse("poly:0.75"), steps=90)
    end = plan.get_config()["config"]["end_step"]
    assert end <= 90
    should_prune, sparsity = plan(end)
    assert bool(should_prune) and abs(float(sparsity) - 0.75) < 1e-6
