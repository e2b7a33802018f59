import numpy as np
import pytest

from core.errors import SparseLabError
from core.tflite.inspection import inspect_tflite, weight_heatmap
from tests.fixtures_keras import tflite_layout


@pytest.mark.slow  # tiny_cnn trains and converts a CNN
def test_sparse_file_reads_back_the_true_stripped_keras_weights(tiny_cnn):
    report = inspect_tflite(tiny_cnn.files["sparse"])
    by_shape = {t.shape: t for t in report.tensors}
    for name in ("conv1", "dense1"):  # no BatchNorm folded into these
        expected = tflite_layout(tiny_cnn.pruned.get_layer(name).kernel.numpy())
        tensor = by_shape[expected.shape]
        assert tensor.stored_sparse
        np.testing.assert_array_equal(tensor.values, expected)
    conv2 = tflite_layout(tiny_cnn.pruned.get_layer("conv2").kernel.numpy())  # BatchNorm folded: zeros match
    np.testing.assert_array_equal(by_shape[conv2.shape].values == 0, conv2 == 0)


@pytest.mark.parametrize("data, words", [
    (b"", "TFL3"),
    (b"not a model at all, just some text", "TFL3"),
    (b"\x1c\x00\x00\x00TFL3" + bytes(range(256)) * 4, "interpreter rejects"),
])
def test_invalid_upload_is_rejected(data, words):
    with pytest.raises(SparseLabError, match=words):
        inspect_tflite(data)


@pytest.mark.slow  # tiny_cnn trains and converts a CNN
def test_truncated_model_is_rejected(tiny_cnn):
    with pytest.raises(SparseLabError, match="interpreter rejects"):
        inspect_tflite(tiny_cnn.files["float"][:4000])


@pytest.mark.slow  # tiny_cnn trains and converts a CNN
def test_heatmap_window_and_group_lines(tiny_cnn):
    conv2 = next(t for t in inspect_tflite(tiny_cnn.files["sparse"]).tensors if t.shape == (64, 3, 3, 32))
    heatmap = weight_heatmap(conv2, n=4, row_start=5, col_start=2, rows=20, cols=12)
    assert heatmap.mask.shape == (20, 12)
    np.testing.assert_array_equal(heatmap.mask, conv2.matrix[5:25, 2:14] != 0)
    assert heatmap.col_lines == [1.5, 5.5, 9.5]  # groups of 4 start at columns 4, 8, 12
    assert heatmap.row_lines == [3.5, 12.5]  # output channels (9 rows each) start at rows 9 and 18
