import numpy as np
import pytest

from core.tflite.inspection import inspect_tflite

pytestmark = pytest.mark.slow  # trains and converts the tiny CNN (tiny_cnn)

PRUNED_2_4 = {(64, 3, 3, 32), (256, 256)}  # conv2 and dense1 in TFLite layout


def test_2_of_4_pattern_holds_in_plain_sparse_and_int8_files(tiny_cnn):
    for variant in ("float", "sparse", "int8"):
        report = inspect_tflite(tiny_cnn.files[variant], mn=(2, 4))
        holding = {report.tensor(name).shape for name in report.mn_holding()}
        assert holding == PRUNED_2_4, variant


def test_sparse_file_stores_pruned_weights_compressed_and_is_smaller(tiny_cnn):
    report = inspect_tflite(tiny_cnn.files["sparse"])
    compressed = {t.shape for t in report.tensors if t.stored_sparse}
    assert PRUNED_2_4 <= compressed
    assert (10, 256) not in compressed  # the dense classifier is stored plain
    assert len(tiny_cnn.files["sparse"]) < 0.8 * len(tiny_cnn.files["float"])


def test_int8_file_is_fully_integer(tiny_cnn):
    report = inspect_tflite(tiny_cnn.files["int8"])
    assert {t.stored_dtype for t in report.tensors} == {"int8"}
    assert len(tiny_cnn.files["int8"]) < len(tiny_cnn.files["float"]) / 3
    assert all(np.isfinite(t.values).all() for t in report.tensors)
