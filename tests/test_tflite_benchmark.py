import numpy as np
import pytest

import core.tflite.benchmark as benchmark
from core.tflite.training import keras_accuracy

pytestmark = pytest.mark.slow  # trains and converts the tiny CNN (tiny_cnn)


def test_interpreter_accuracy_matches_keras(tiny_cnn):
    data = tiny_cnn.data
    expected = keras_accuracy(tiny_cnn.pruned, data.x_test, data.y_test)
    assert expected > 0.5  # a model that learnt something, so agreement means something
    assert abs(benchmark.tflite_accuracy(tiny_cnn.files["float"], data.x_test, data.y_test) - expected) < 0.01
    assert abs(benchmark.tflite_accuracy(tiny_cnn.files["sparse"], data.x_test, data.y_test) - expected) < 0.01
    assert abs(benchmark.tflite_accuracy(tiny_cnn.files["int8"], data.x_test, data.y_test) - expected) < 0.05


def test_int8_logits_are_dequantized(tiny_cnn):
    logits = benchmark.predict(tiny_cnn.files["int8"], tiny_cnn.data.x_test[:8])
    assert logits.dtype == np.float32 and logits.shape == (8, 10)
    assert np.abs(logits - benchmark.predict(tiny_cnn.files["float"], tiny_cnn.data.x_test[:8])).max() < 2.0


def test_latency_goes_through_the_shared_timing_helper(tiny_cnn, monkeypatch):
    calls = []

    def recording_measure(fn, **kwargs):
        calls.append(kwargs)
        return measure(fn, **kwargs)

    measure = benchmark.measure
    monkeypatch.setattr(benchmark, "measure", recording_measure)
    timing = benchmark.tflite_latency(tiny_cnn.files["sparse"], tiny_cnn.data.x_test[0], threads=2, repeats=7,
                                      warmup=2)
    assert calls == [{"threads": 2, "repeats": 7, "warmup": 2}]
    assert timing.threads == 2 and timing.repeats == 7 and 0 < timing.min_ms <= timing.median_ms
