"""A tiny trained digits CNN, its 2:4-pruned copy and their .tflite exports, built once per session.

A pytest plugin of tests/conftest.py, so every test module sees ``tiny_cnn``. One epoch
each: enough for real weights and a real 2:4 pattern, cheap on 2 shared cores.
"""

import functools
from dataclasses import dataclass

import numpy as np
import pytest

import core  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from core.tflite.digits import DigitsSplit, load_split
from core.tflite.options import MODELS, PruneSpec

SEED = 0
BATCH = 32


@dataclass(frozen=True)
class TinyRun:
    data: DigitsSplit
    dense: object  # tf_keras Model
    dense_weights_before_pruning: list
    pruned: object  # stripped mn:2:4 model
    files: dict  # variant -> .tflite bytes of the pruned model


def tflite_layout(kernel: np.ndarray) -> np.ndarray:
    """A Keras kernel in TFLite's layout: Conv2D (h, w, in, out) -> (out, h, w, in); Dense (in, out) -> (out, in)."""
    return kernel.transpose(3, 0, 1, 2) if kernel.ndim == 4 else kernel.T


@functools.cache  # a module that still imports the fixture gets its own copy of it, which would build again
def _tiny_run() -> TinyRun:
    from core.tflite.export import convert
    from core.tflite.pruning import prune
    from core.tflite.training import train_dense

    data = load_split(SEED)
    dense = train_dense(MODELS["digits-cnn"], data, epochs=1, batch_size=BATCH, seed=SEED)
    before = [w.copy() for w in dense.get_weights()]
    pruned = prune(dense, PruneSpec.parse("mn:2:4"), data, epochs=1, batch_size=BATCH, seed=SEED)
    files = {variant: convert(pruned, variant, data.x_train) for variant in ("float", "sparse", "int8")}
    return TinyRun(data, dense, before, pruned, files)


@pytest.fixture(scope="session")
def tiny_cnn() -> TinyRun:
    return _tiny_run()
