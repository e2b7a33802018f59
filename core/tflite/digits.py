"""scikit-learn's bundled 8x8 digits (no download), split the same way for every model with a seed.

The MobileNet-like model needs 3 channels and room for two stride-2 stages, so
its view of the same images is upsampled (nearest neighbour) and repeated over
3 channels: the held-out images are the very same digits for both models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TEST_FRACTION = 0.2


@dataclass(frozen=True)
class DigitsSplit:
    """Images in [0, 1], NHWC float32, with integer labels 0..9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_split(seed: int, upscale: int = 1, channels: int = 1) -> DigitsSplit:
    """A stratified train/test split decided by ``seed``; images scaled ``upscale`` times, ``channels`` deep."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    images = images.repeat(upscale, axis=1).repeat(upscale, axis=2)[..., None].repeat(channels, axis=-1)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target.astype(np.int64), test_size=TEST_FRACTION, random_state=seed,
        stratify=digits.target)
    return DigitsSplit(x_train, y_train, x_test, y_test)
