"""Training and fine-tuning the digits models, and keeping the results in the artifact cache.

A model is cached as an .h5 file (no optimizer) under a key made of everything
that determines it, so a second run with the same settings and seed trains
nothing. What is returned is always the model read back from the cache, so the
first run uses exactly what later runs will load.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tf_keras as keras

from core.artifact_cache import ArtifactCache, ArtifactSpec
from core.tflite.digits import DigitsSplit
from core.tflite.models import build_model
from core.tflite.options import ModelChoice

MODEL_FILE = "model.h5"
LIBRARIES = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "scikit-learn", "numpy")
# Bump when a model builder or the training recipe changes, so cached models are rebuilt.
RECIPE_VERSION = 1
LEARNING_RATE = 1e-3

EpochCallback = Callable[[int, int], None]  # (epochs done, epochs in all)


def fit(model: keras.Model, data: DigitsSplit, epochs: int, batch_size: int, seed: int,
        callbacks: Sequence[keras.callbacks.Callback] = (), on_epoch: EpochCallback | None = None) -> None:
    """Compile with a fresh Adam and train on the training split, seeded."""
    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callbacks = list(callbacks)
    if on_epoch:
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: on_epoch(epoch + 1, epochs)))
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0,
              callbacks=callbacks)


def train_dense(choice: ModelChoice, data: DigitsSplit, epochs: int, batch_size: int, seed: int,
                on_epoch: EpochCallback | None = None) -> keras.Model:
    """The dense baseline: a fresh model (initial weights from ``seed``) trained for ``epochs``."""
    keras.utils.set_random_seed(seed)
    model = build_model(choice)
    fit(model, data, epochs, batch_size, seed, on_epoch=on_epoch)
    return model


def keras_accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    logits = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def cached_model(cache: ArtifactCache, spec: ArtifactSpec, build: Callable[[], keras.Model],
                 description: str) -> tuple[keras.Model, bool]:
    """(model read from the cache, cache hit); ``build()`` trains it on a miss."""
    def write(directory: Path) -> None:
        with warnings.catch_warnings():  # .h5 is a deliberate choice here, not an oversight
            warnings.filterwarnings("ignore", message=".*HDF5 file via `model.save\\(\\)`.*")
            build().save(directory / MODEL_FILE, include_optimizer=False)

    path, hit = cache.get_or_build(spec, write, description)
    return keras.models.load_model(path / MODEL_FILE, compile=False), hit


def model_spec(kind: str, inputs: dict) -> ArtifactSpec:
    return ArtifactSpec(kind=kind, inputs={**inputs, "recipe": RECIPE_VERSION}, libraries=LIBRARIES)
