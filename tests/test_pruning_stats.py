import numpy as np
import pytest
import torch

from core.pruning.stats import heatmap, layer_sparsities, overall_sparsity


def test_layer_sparsities_cover_every_linear_layer(tiny_model):
    with torch.no_grad():
        tiny_model.encoder.layer[0].output.dense.weight[:64] = 0  # half of the 128x512 weight, in whole 16x1 blocks
    layers = {l.name: l for l in layer_sparsities(tiny_model, (16, 1), selected=["encoder.layer.0.output.dense"])}
    assert len(layers) == 13
    target = layers["encoder.layer.0.output.dense"]
    assert target.shape == (128, 512) and target.selected and target.zeros == 64 * 512
    assert target.sparsity == 0.5 and target.block_sparsity == 0.5
    assert layers["pooler.dense"].sparsity == 0.0 and not layers["pooler.dense"].selected
    assert target.as_dict()["shape"] == [128, 512]
    pooled = overall_sparsity([target, layers["pooler.dense"]])
    assert pooled == pytest.approx(64 * 512 / (128 * 512 + 128 * 128))


def test_heatmap_window_with_block_lines():
    weight = torch.ones(64, 64)
    weight[16:32, 3] = 0
    view = heatmap(weight, (16, 1), row_start=8, col_start=2, rows=32, cols=4)
    assert view.mask.shape == (32, 4) and view.mask.dtype == np.uint8
    assert view.mask[:8, 1].all() and not view.mask[8:24, 1].any() and view.mask[24:, 1].all()
    assert view.row_lines == [7.5, 23.5]  # rows 16 and 32 of the weight start blocks
    assert view.col_lines == []            # 1-wide blocks: every column is its own block


def test_heatmap_is_clipped_to_the_weight():
    view = heatmap(torch.ones(8, 12), (4, 4), row_start=4, col_start=6, rows=64, cols=64)
    assert view.mask.shape == (4, 6)
    assert view.row_lines == [] and view.col_lines == [1.5]
