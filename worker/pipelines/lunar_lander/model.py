"""The chapter's `Brain`: a small fully connected network from a state vector to one Q-value per action.

The book's default (`two_layers_network`):

    input (8,) -> dense 32, ReLU -> dense 32, ReLU -> dense 4, linear

1,476 parameters for LunarLander. Weights are Glorot-uniform and biases zero, as TF1's
`fully_connected` initialises them. The hidden layers are a parameter; the book suggests a leaky ReLU
(slope 0.2) for bigger networks.

Acting needs one forward pass of one state per environment step. A Keras or tf.function call costs
~200 us of dispatch for microseconds of arithmetic, so the agent acts with `numpy_forward` on a copy
of the weights (~10 us) and keeps TensorFlow for the training step.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import layers

LEAKY_RELU_SLOPE = 0.2  # book: leaky_relu(x, alpha=0.2)


def build_q_network(
    observation_size: int,
    action_count: int,
    hidden_layers: Sequence[int] = (32, 32),
    activation: str = "relu",
    seed: int | None = None,
) -> keras.Model:
    """The book's Brain network: hidden dense layers, then a linear Q-value per action.

    With a seed, each layer's initializer gets its own seed derived from it: Keras otherwise draws
    unseeded initializers' seeds from Python's global `random`, which other threads of a worker use.
    """

    def glorot(index: int):
        return keras.initializers.GlorotUniform(seed=None if seed is None else seed * 100 + index)

    inputs = keras.Input(shape=(observation_size,), name="state")
    x = inputs
    for index, units in enumerate(hidden_layers, start=1):
        x = layers.Dense(units, kernel_initializer=glorot(index), bias_initializer="zeros", name=f"hidden{index}")(x)
        if activation == "leaky_relu":
            x = layers.LeakyReLU(negative_slope=LEAKY_RELU_SLOPE, name=f"hidden{index}_leaky_relu")(x)
        else:
            x = layers.ReLU(name=f"hidden{index}_relu")(x)
    q_values = layers.Dense(action_count, kernel_initializer=glorot(0), bias_initializer="zeros", name="q_values")(x)
    return keras.Model(inputs, q_values, name="brain")


def numpy_forward(weights: Sequence[np.ndarray], states: np.ndarray, activation: str = "relu") -> np.ndarray:
    """Q-values of a batch of states, with the network's [kernel, bias, kernel, bias, ...] weights."""
    x = states
    last = len(weights) - 2
    for index in range(0, len(weights), 2):
        x = x @ weights[index] + weights[index + 1]
        if index < last:
            x = np.maximum(x, 0.0) if activation == "relu" else np.where(x > 0, x, LEAKY_RELU_SLOPE * x)
    return x
