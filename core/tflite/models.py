"""The two Keras (tf-keras 2) CNNs the Export page prunes.

``digits-cnn`` is the TF-MOT structural-pruning tutorial's model scaled from
28x28 MNIST to 8x8 digits: a 1-channel conv (unstructured pruning), a conv with
many input channels and a dense layer (both fit for 2:4), a dense classifier.
``digits-mobilenet`` is shaped for ``PruneForLatencyOnXNNPack``: it starts with
ZeroPadding2D(1) + a 3x3 stride-2 'valid' Conv2D on 3 channels, uses only
layers XNNPACK's sparse path supports, and ends the sparse part with a
GlobalAveragePooling2D(keepdims=True).
"""

from __future__ import annotations

from collections.abc import Callable

import tf_keras as keras

from core.tflite.options import ModelChoice

layers = keras.layers
NUM_CLASSES = 10
# BatchNorm's default momentum (0.99) leaves its moving statistics unsettled after the
# few hundred steps a digits run takes, and the model then scores ~10% in inference mode.
_BN_MOMENTUM = 0.9


def build_digits_cnn(input_shape: tuple[int, int, int]) -> keras.Model:
    return keras.Sequential([
        keras.Input(input_shape),
        layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1"),
        layers.MaxPooling2D(2, 2, padding="same"),
        layers.Conv2D(64, 3, padding="same", name="conv2"),
        layers.BatchNormalization(momentum=_BN_MOMENTUM),
        layers.ReLU(),
        layers.MaxPooling2D(2, 2, padding="same"),
        layers.Flatten(),
        layers.Dense(256, activation="relu", name="dense1"),
        layers.Dropout(0.4),
        layers.Dense(NUM_CLASSES, name="logits"),
    ], name="digits_cnn")


def _bn_relu(tensor):
    return layers.ReLU()(layers.BatchNormalization(momentum=_BN_MOMENTUM)(tensor))


def build_digits_mobilenet(input_shape: tuple[int, int, int]) -> keras.Model:
    inputs = keras.Input(input_shape)
    x = layers.ZeroPadding2D(1)(inputs)
    x = _bn_relu(layers.Conv2D(32, 3, strides=2, padding="valid", use_bias=False, name="stem")(x))
    for index, (filters, stride) in enumerate([(64, 1), (128, 2), (128, 1), (256, 2), (256, 1)], start=1):
        if stride == 2:  # the stride-2 form XNNPACK's sparse path accepts
            x = layers.ZeroPadding2D(1)(x)
            x = layers.DepthwiseConv2D(3, strides=2, padding="valid", use_bias=False)(x)
        else:
            x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = _bn_relu(x)
        x = _bn_relu(layers.Conv2D(filters, 1, use_bias=False, name=f"pointwise{index}")(x))
    x = layers.GlobalAveragePooling2D(keepdims=True)(x)
    outputs = layers.Dense(NUM_CLASSES, name="logits")(layers.Flatten()(x))
    return keras.Model(inputs, outputs, name="digits_mobilenet")


BUILDERS: dict[str, Callable[[tuple[int, int, int]], keras.Model]] = {
    "digits-cnn": build_digits_cnn,
    "digits-mobilenet": build_digits_mobilenet,
}


def build_model(choice: ModelChoice) -> keras.Model:
    return BUILDERS[choice.name](choice.input_shape)


def prunable_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Conv2D and Dense layers, except the classifier, which stays dense as in the TF-MOT tutorial."""
    weighted = [layer for layer in model.layers if isinstance(layer, (layers.Conv2D, layers.Dense))]
    return weighted[:-1]


def input_depth(layer: keras.layers.Layer) -> int:
    """Input channels of a Conv2D/Dense kernel: the last dimension of its TFLite weight, where m:n groups run."""
    return int(layer.kernel.shape[-2])
