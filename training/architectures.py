"""Model-building functions. Every model takes uint8-range input and starts with Rescaling(1/255)."""
from __future__ import annotations

from typing import Callable

import keras
from keras import layers


def _conv_bn(x, filters: int, l2: float, kernel: int = 3, strides: int = 1):
    reg = keras.regularizers.L2(l2) if l2 else None
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                      kernel_regularizer=reg)(x)
    x = layers.BatchNormalization()(x)
    return layers.Activation("relu")(x)


def _head(x, n_classes: int, dropout: float, l2: float):
    x = layers.GlobalAveragePooling2D()(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    reg = keras.regularizers.L2(l2) if l2 else None
    x = layers.Dense(n_classes, kernel_regularizer=reg)(x)
    return layers.Activation("softmax", dtype="float32", name="probs")(x)


def baseline_cnn(input_shape, n_classes: int, width: int = 32, dropout: float = 0.5, l2: float = 1e-3):
    """The seed reports' small CNN: three conv/pool blocks, batch norm, L2, a dense layer."""
    inputs = keras.Input(input_shape)
    x = layers.Rescaling(1 / 255.0)(inputs)
    for filters in (width, width * 2, width * 4):
        x = _conv_bn(x, filters, l2)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu", kernel_regularizer=keras.regularizers.L2(l2))(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(n_classes)(x)
    outputs = layers.Activation("softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name="baseline_cnn")


def compact_cnn(input_shape, n_classes: int, width: int = 24, dropout: float = 0.3, l2: float = 0.0):
    """Grin's default: a fast residual CNN (stride-2 stem, three stages of two 3x3 convs)."""
    inputs = keras.Input(input_shape)
    x = layers.Rescaling(1 / 255.0)(inputs)
    x = _conv_bn(x, width, l2, strides=2 if input_shape[0] >= 64 else 1)
    for i, filters in enumerate((width * 2, width * 4, width * 8)):
        shortcut = layers.Conv2D(filters, 1, strides=2, use_bias=False)(x)
        shortcut = layers.BatchNormalization()(shortcut)
        y = _conv_bn(x, filters, l2, strides=2)
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False,
                          kernel_regularizer=keras.regularizers.L2(l2) if l2 else None)(y)
        y = layers.BatchNormalization()(y)
        x = layers.Activation("relu")(layers.Add()([shortcut, y]))
        if i == 2:
            x = _conv_bn(x, filters, l2)
    return keras.Model(inputs, _head(x, n_classes, dropout, l2), name="compact_cnn")


def expression_cnn(input_shape, n_classes: int, width: int = 64, dropout: float = 0.4, l2: float = 0.0):
    """A VGG-style CNN for 48x48 faces: four stages of two 3x3 convs with batch norm."""
    inputs = keras.Input(input_shape)
    x = layers.Rescaling(1 / 255.0)(inputs)
    for i, filters in enumerate((width, width * 2, width * 4, width * 8)):
        x = _conv_bn(x, filters, l2)
        x = _conv_bn(x, filters, l2)
        if i < 3:
            x = layers.MaxPooling2D()(x)
    return keras.Model(inputs, _head(x, n_classes, dropout, l2), name="expression_cnn")


ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {
    "baseline": baseline_cnn,
    "compact": compact_cnn,
    "expression": expression_cnn,
}
DEFAULT_WIDTH = {"baseline": 32, "compact": 24, "expression": 64}


def build_model(arch: str, input_shape, n_classes: int, width: int | None = None,
                dropout: float = 0.3, l2: float = 0.0) -> keras.Model:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture '{arch}'; choose from {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](tuple(input_shape), n_classes, width=width or DEFAULT_WIDTH[arch],
                               dropout=dropout, l2=l2)
