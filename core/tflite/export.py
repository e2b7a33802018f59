"""Converting a (stripped) Keras model to the four TFLite variants.

``sparse`` asks the converter to store sparse weights compressed
(EXPERIMENTAL_SPARSITY); it only encodes tensors sparse enough to shrink, so a
dense model comes out as plain float. ``int8`` is full-integer, int8 in and out,
calibrated on training images.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from core.artifact_cache import ArtifactCache, ArtifactSpec
from core.tflite.options import VARIANTS

TFLITE_FILE = "model.tflite"
CALIBRATION_IMAGES = 200


def convert(model: keras.Model, variant: str, calibration: np.ndarray) -> bytes:
    """The .tflite flatbuffer of ``model`` as ``variant`` (one of ``options.VARIANTS``)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown TFLite variant {variant!r}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if variant == "sparse":
        converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    elif variant in ("dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "int8":
        images = calibration[:CALIBRATION_IMAGES].astype(np.float32)
        converter.representative_dataset = lambda: ([image[None]] for image in images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    with warnings.catch_warnings():  # int8 asks for input statistics it takes from the representative data
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        return converter.convert()


def cached_export(cache: ArtifactCache, model_key: str, model: keras.Model, variant: str,
                  calibration: np.ndarray, description: str) -> tuple[Path, bool]:
    """(path of the cached .tflite, cache hit), keyed by the Keras model's own cache key and the variant."""
    spec = ArtifactSpec(kind="tflite-export", inputs={"model": model_key, "variant": variant},
                        libraries=("tensorflow",))
    directory, hit = cache.get_or_build(
        spec, lambda target: (target / TFLITE_FILE).write_bytes(convert(model, variant, calibration)), description)
    return directory / TFLITE_FILE, hit
