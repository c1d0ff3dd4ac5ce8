"""The chapter's forecasters in the Keras functional API, and their optimizers.

- `linear` (the book's `regression_ANN`): the W past values as independent features, one
  `matmul + bias`; weights truncated-normal with stddev 1.0, bias zero. W + 1 parameters.
- `lstm` (the book's `RNN`): one LSTM layer of `units` cells over the W steps (input dimension 1),
  its last output into a dense layer to one value whose weights are truncated-normal with stddev
  `output_init_stddev` (the book: 1.0 for the cosine, 10.0 for raw stock prices), bias zero.
  256 units: 264,449 parameters.
- `gru` and `rnn` (SimpleRNN): the book's follow-up question, same head. `recurrent_layers` > 1
  stacks layers (the book uses one).

Keras' LSTM matches TF1's BasicLSTMCell (tanh, sigmoid gates, forget bias 1.0 via
`unit_forget_bias`); only the kernels' initialisation differs (Glorot + orthogonal recurrent).
"""

from __future__ import annotations

import keras
from keras import layers

RECURRENT_LAYERS = {"lstm": layers.LSTM, "gru": layers.GRU, "rnn": layers.SimpleRNN}
MODELS = ("linear", *RECURRENT_LAYERS)


def build_model(
    *,
    model: str,
    window: int,
    units: int | None = None,
    recurrent_layers: int = 1,
    output_init_stddev: float = 1.0,
) -> keras.Model:
    """A forecaster of the next value from `window` past values: (None, W) for linear, (None, W, 1) else."""
    # TF1's tf.truncated_normal and Keras' TruncatedNormal both cut at two standard deviations.
    head_initializer = keras.initializers.TruncatedNormal(mean=0.0, stddev=output_init_stddev)
    if model == "linear":
        inputs = keras.Input(shape=(window,), name="window")
        regression = layers.Dense(1, kernel_initializer=head_initializer, bias_initializer="zeros", name="regression")
        outputs = regression(inputs)
        return keras.Model(inputs, outputs, name="linear_regression")
    if model not in RECURRENT_LAYERS:
        raise ValueError(f"model: expected one of {', '.join(MODELS)}, got {model!r}")
    if not units or units < 1:
        raise ValueError(f"units: a {model} model needs at least one unit, got {units!r}")
    inputs = keras.Input(shape=(window, 1), name="window")
    x = inputs
    for index in range(1, recurrent_layers + 1):
        # Every layer but the last hands its whole sequence on; the last hands only its final output.
        x = RECURRENT_LAYERS[model](units, return_sequences=index < recurrent_layers, name=f"{model}{index}")(x)
    outputs = layers.Dense(1, kernel_initializer=head_initializer, bias_initializer="zeros", name="output")(x)
    return keras.Model(inputs, outputs, name=f"{model}_forecaster")


def build_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """The book's optimizers with TF1's settings where Keras' defaults differ."""
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate, epsilon=1e-8)  # TF1 AdamOptimizer's epsilon
    if name == "adagrad":
        return keras.optimizers.Adagrad(learning_rate=learning_rate, initial_accumulator_value=0.1)
    raise ValueError(f"optimizer: expected adam or adagrad, got {name!r}")
