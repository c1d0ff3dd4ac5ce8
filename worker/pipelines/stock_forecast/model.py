"""The chapter's forecasters in the Keras functional API, and their optimizers.

- `linear` (the book's `regression_ANN`): the W past values as independent features, one
  `matmul + bias`; weights truncated-normal with stddev 1.0, bias zero. W + 1 parameters.
- `lstm` (the book's `RNN`): one LSTM layer of `units` cells over the W steps (input dimension 1),
  its last output into a dense layer to one value whose weights are truncated-normal with stddev
  `output_init_stddev` (the book: 1.0 for the cosine, 10.0 for raw stock prices), bias zero.
  256 units: 264,449 parameters.
- `gru` and `rnn` (SimpleRNN): the book's follow-up question, same head. `recurrent_layers` > 1
  stacks layers (the book uses one).

Keras' LSTM computes what TF1's BasicLSTMCell did (tanh, sigmoid gates, forget bias 1.0); only
the kernels' initialisation differs, which `cell_init` chooses (see `_recurrent_initializers`).

Every initializer gets its own seed, counted up from `seed`: unseeded, Keras draws their seeds from
Python's global `random`, which a worker's reporting thread also draws from.
"""

from __future__ import annotations

import itertools
import math

import keras
from keras import layers

RECURRENT_LAYERS = {"lstm": layers.LSTM, "gru": layers.GRU, "rnn": layers.SimpleRNN}
MODELS = ("linear", *RECURRENT_LAYERS)
CELL_INITS = ("book", "keras")
# Gates per TF1 cell whose initialisation `cell_init="book"` reproduces: BasicLSTMCell (i, j, f, o)
# and BasicRNNCell. TF1's GRUCell computes another GRU (reset before the recurrent matmul).
BOOK_CELL_GATES = {"lstm": 4, "rnn": 1}


def build_model(
    *,
    model: str,
    window: int,
    units: int | None = None,
    recurrent_layers: int = 1,
    output_init_stddev: float = 1.0,
    cell_init: str = "keras",
    seed: int | None = None,
) -> keras.Model:
    """A forecaster of the next value from `window` past values: (None, W) for linear, (None, W, 1) else."""
    seeds = itertools.count(seed) if seed is not None else itertools.repeat(None)
    # TF1's tf.truncated_normal and Keras' TruncatedNormal both cut at two standard deviations.
    head_initializer = keras.initializers.TruncatedNormal(mean=0.0, stddev=output_init_stddev, seed=next(seeds))
    if model == "linear":
        inputs = keras.Input(shape=(window,), name="window")
        regression = layers.Dense(1, kernel_initializer=head_initializer, bias_initializer="zeros", name="regression")
        outputs = regression(inputs)
        return keras.Model(inputs, outputs, name="linear_regression")
    if model not in RECURRENT_LAYERS:
        raise ValueError(f"model: expected one of {', '.join(MODELS)}, got {model!r}")
    if not units or units < 1:
        raise ValueError(f"units: a {model} model needs at least one unit, got {units!r}")
    if cell_init not in CELL_INITS:
        raise ValueError(f"cell_init: expected book or keras, got {cell_init!r}")
    if cell_init == "book" and model not in BOOK_CELL_GATES:
        raise ValueError(f"cell_init: book is TF1's initialisation of lstm and rnn cells, not {model}")
    inputs = keras.Input(shape=(window, 1), name="window")
    x = inputs
    for index in range(1, recurrent_layers + 1):
        kernel, recurrent = _recurrent_initializers(model, cell_init, units, int(x.shape[-1]), seeds)
        # Every layer but the last hands its whole sequence on; the last hands only its final output.
        x = RECURRENT_LAYERS[model](
            units, return_sequences=index < recurrent_layers, kernel_initializer=kernel,
            recurrent_initializer=recurrent, bias_initializer="zeros", name=f"{model}{index}",
        )(x)  # fmt: skip
    outputs = layers.Dense(1, kernel_initializer=head_initializer, bias_initializer="zeros", name="output")(x)
    return keras.Model(inputs, outputs, name=f"{model}_forecaster")


def _recurrent_initializers(model: str, cell_init: str, units: int, input_size: int, seeds):
    """(kernel, recurrent kernel) initializers of one recurrent layer.

    keras: Keras' defaults, Glorot-uniform input kernel (fan in = input size) and orthogonal
    recurrent kernel.

    book: TF1's. BasicLSTMCell (and BasicRNNCell) hold ONE kernel of shape (input + units,
    gates * units) over [x, h], created without an initializer, so tf.get_variable's default
    glorot_uniform: every entry i.i.d. uniform in +-sqrt(6 / (input + units + gates * units)); bias
    zeros. Keras keeps the rows for x (`kernel`) and the rows for h (`recurrent_kernel`) apart and
    orders the gates i, f, c, o instead of TF1's i, j, f, o; with i.i.d. entries, splitting the rows
    and permuting the columns give the same distribution, so both drawn uniform with that joint
    limit are TF1's kernel. TF1 adds forget_bias=1.0 as a constant to a zero-initialised trainable
    bias; Keras' `unit_forget_bias` (on by default) starts the trainable forget bias at 1.0 instead:
    the same pre-activation at every step and the same gradient, so the same training.
    """
    if cell_init == "keras":
        return (
            keras.initializers.GlorotUniform(seed=next(seeds)),
            keras.initializers.Orthogonal(seed=next(seeds)),
        )
    limit = math.sqrt(6.0 / (input_size + units + BOOK_CELL_GATES[model] * units))
    return (
        keras.initializers.RandomUniform(-limit, limit, seed=next(seeds)),
        keras.initializers.RandomUniform(-limit, limit, seed=next(seeds)),
    )


def build_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """The book's optimizers with TF1's settings where Keras' defaults differ."""
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate, epsilon=1e-8)  # TF1 AdamOptimizer's epsilon
    if name == "adagrad":
        return keras.optimizers.Adagrad(learning_rate=learning_rate, initial_accumulator_value=0.1)
    raise ValueError(f"optimizer: expected adam or adagrad, got {name!r}")
