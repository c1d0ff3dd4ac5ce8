"""The chapter's convolutional network, in the Keras functional API.

Layer by layer as the book's code builds it (the code is authoritative; the text's list leaves out
the pools and the 20 % dropouts):

    input (32, 32, 1), the L channel in 0..100
    conv 5x5, 32 filters, SAME, leaky ReLU -> max-pool 2x2 stride 2 SAME -> dropout 0.2
    conv 5x5, 64 filters, SAME, leaky ReLU -> max-pool 2x2 stride 2 SAME -> dropout 0.2
    flatten (4096) -> dense 1024, leaky ReLU -> dropout 0.4 -> dense 43 (logits) -> softmax

Weights are Glorot-uniform (TF1's `xavier_initializer()`), biases start at zero. With 43 classes
the model has 4,291,499 parameters.
"""

from __future__ import annotations

import itertools

import keras
from keras import layers

from worker.pipelines.traffic_signs.labels import N_CLASSES

# The book calls tf.nn.leaky_relu without alpha, so TF's default 0.2 applies; Keras' default is 0.3.
LEAKY_RELU_SLOPE = 0.2
# Book: keep_prob 0.8 / 0.8 / 0.6 (TF1's dropout argument); Keras takes the rate dropped instead.
DROPOUT_RATES = (0.2, 0.2, 0.4)


def build_model(
    *,
    input_shape: tuple[int, int, int] = (32, 32, 1),
    n_classes: int = N_CLASSES,
    conv_filters: tuple[int, int] = (32, 64),
    kernel_size: int = 5,
    dense_units: int = 1024,
    seed: int | None = None,
) -> keras.Model:
    """The book's CNN; outputs class probabilities (softmax over the `logits` layer).

    With a `seed`, every initializer and dropout layer gets a seed of its own derived from it, so the
    model is the same whatever else in the process drew from Python's global random generator since
    `keras.utils.set_random_seed` (a worker's reporting thread does: same-seed runs used to differ).
    """
    layer_seeds = itertools.count(seed) if seed is not None else itertools.repeat(None)

    def glorot_uniform():
        return keras.initializers.GlorotUniform(seed=next(layer_seeds))

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for index, filters in enumerate(conv_filters, start=1):
        x = layers.Conv2D(
            filters,
            kernel_size,
            padding="same",
            kernel_initializer=glorot_uniform(),
            bias_initializer="zeros",
            name=f"conv{index}",
        )(x)
        x = layers.LeakyReLU(negative_slope=LEAKY_RELU_SLOPE, name=f"conv{index}_leaky_relu")(x)
        x = layers.MaxPooling2D(pool_size=2, strides=2, padding="same", name=f"pool{index}")(x)
        x = layers.Dropout(DROPOUT_RATES[index - 1], seed=next(layer_seeds), name=f"dropout{index}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, kernel_initializer=glorot_uniform(), bias_initializer="zeros", name="dense")(x)
    x = layers.LeakyReLU(negative_slope=LEAKY_RELU_SLOPE, name="dense_leaky_relu")(x)
    x = layers.Dropout(DROPOUT_RATES[2], seed=next(layer_seeds), name="dropout3")(x)
    logits = layers.Dense(n_classes, kernel_initializer=glorot_uniform(), bias_initializer="zeros", name="logits")(x)
    # Softmax as a layer: Keras' cross-entropy then works from the logits underneath (stable), and
    # the saved model answers probabilities directly.
    probabilities = layers.Activation("softmax", name="probabilities")(logits)
    return keras.Model(inputs, probabilities, name="traffic_signs_cnn")
