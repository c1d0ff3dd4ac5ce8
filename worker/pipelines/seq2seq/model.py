"""The encoder-decoder with attention, in Keras: the book's `Seq2SeqModel` without TF1.

What the book's model (tensorflow/models `seq2seq_model.py`, called through
`embedding_attention_seq2seq`) builds, and what is kept:
- source and target embeddings of `units` dimensions (its embedding_size = size);
- an encoder of `layers` stacked recurrent layers of `units` (2 x 256 GRU in both chapters: the
  upstream default cell is GRU, which the book calls LSTM; LSTM is an option here);
- a decoder of the same stack, starting from the encoder's final states, with attention over the
  encoder outputs. The attention here is Luong's (dot product, after the decoder's recurrent layers,
  combined through a tanh layer) rather than the legacy input-fed one, so that the same layers
  decode whole sequences in training and one step at a time when serving;
- a full softmax over the target vocabulary, not the 512-sample sampled softmax (with a vocabulary of
  10k words a full one is affordable, and it is the loss that perplexity is reported from).

Padding (id 0) is masked in the encoder and the attention; padded targets are ignored by the loss
and by `Perplexity`.
"""

from __future__ import annotations

import itertools

import keras
from keras import layers, ops

from worker.pipelines.seq2seq.text import PAD_ID

CELLS = {"gru": layers.GRU, "lstm": layers.LSTM}


@keras.saving.register_keras_serializable(package="dlsite.seq2seq")
class Seq2SeqModel(keras.Model):
    """Call with (source ids [batch, source_length], decoder input ids [batch, target_length]);
    returns logits [batch, target_length, target vocabulary]."""

    def __init__(
        self,
        source_vocabulary_size: int,
        target_vocabulary_size: int,
        *,
        units: int = 256,
        layers: int = 2,
        cell: str = "gru",
        embedding_size: int | None = None,
        seed: int | None = None,
        unroll: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if cell not in CELLS:
            raise ValueError(f"cell: expected one of {sorted(CELLS)}, got {cell!r}")
        self.source_vocabulary_size = source_vocabulary_size
        self.target_vocabulary_size = target_vocabulary_size
        self.units = units
        self.layer_count = layers
        self.cell = cell
        self.embedding_size = embedding_size or units
        self.seed = seed
        # Unrolled, a recurrent layer is a straight run of its steps rather than a loop: the same
        # weights and results, less overhead per call; for serving (short fixed lengths, many calls).
        self.unroll = unroll
        # With a seed, every initializer gets one of its own derived from it: unseeded, Keras draws their
        # seeds from Python's global `random`, which a worker's reporting thread also draws from.
        seeds = itertools.count(seed) if seed is not None else itertools.repeat(None)

        def recurrent(name: str):
            return CELLS[cell](
                units, return_sequences=True, return_state=True, name=name, unroll=unroll,
                kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)),
                recurrent_initializer=keras.initializers.Orthogonal(seed=next(seeds)),
            )

        def embedding(vocabulary_size: int, name: str):
            initializer = keras.initializers.RandomUniform(-0.05, 0.05, seed=next(seeds))  # Keras' default range
            return keras.layers.Embedding(
                vocabulary_size, self.embedding_size, embeddings_initializer=initializer, name=name
            )

        def dense(size: int, name: str, **options):
            initializer = keras.initializers.GlorotUniform(seed=next(seeds))
            return keras.layers.Dense(size, kernel_initializer=initializer, name=name, **options)

        self.source_embedding = embedding(source_vocabulary_size, "source_embedding")
        self.target_embedding = embedding(target_vocabulary_size, "target_embedding")
        self.encoder_layers = [recurrent(f"encoder_{index}") for index in range(layers)]
        self.decoder_layers = [recurrent(f"decoder_{index}") for index in range(layers)]
        self.attention = keras.layers.Attention(name="attention")
        self.attention_combine = dense(units, "attention_combine", activation="tanh")
        self.output_projection = dense(target_vocabulary_size, "output_projection")

    @property
    def states_per_layer(self) -> int:
        return 2 if self.cell == "lstm" else 1

    def encode(self, source, training=False):
        """(encoder outputs [batch, source_length, units], source mask, final states per layer)."""
        mask = ops.not_equal(source, PAD_ID)
        outputs = self.source_embedding(source)
        states = []
        for layer in self.encoder_layers:
            outputs, *state = layer(outputs, mask=mask, training=training)
            states.append(state)
        return outputs, mask, states

    def decode(self, decoder_inputs, states, encoder_outputs, source_mask, training=False):
        """(logits [batch, steps, vocabulary], states after the last step) for `decoder_inputs`."""
        outputs = self.target_embedding(decoder_inputs)
        new_states = []
        for layer, state in zip(self.decoder_layers, states):
            outputs, *state = layer(outputs, initial_state=state, training=training)
            new_states.append(state)
        context = self.attention([outputs, encoder_outputs], mask=[None, source_mask])
        combined = self.attention_combine(ops.concatenate([outputs, context], axis=-1))
        return self.output_projection(combined), new_states

    def call(self, inputs, training=False):
        source, decoder_inputs = inputs
        encoder_outputs, mask, states = self.encode(source, training=training)
        logits, _ = self.decode(decoder_inputs, states, encoder_outputs, mask, training=training)
        return logits

    def get_config(self):
        return {
            **super().get_config(),
            "source_vocabulary_size": self.source_vocabulary_size,
            "target_vocabulary_size": self.target_vocabulary_size,
            "units": self.units,
            "layers": self.layer_count,
            "cell": self.cell,
            "embedding_size": self.embedding_size,
            "seed": self.seed,
            "unroll": self.unroll,
        }


def build_model(
    source_vocabulary_size: int,
    target_vocabulary_size: int,
    *,
    source_length: int,
    target_length: int,
    units: int = 256,
    layers: int = 2,
    cell: str = "gru",
    seed: int | None = None,
    unroll: bool = False,
) -> Seq2SeqModel:
    """A model with its weights created (called once on zeros of the padded shapes)."""
    model = Seq2SeqModel(
        source_vocabulary_size, target_vocabulary_size, units=units, layers=layers, cell=cell, seed=seed,
        unroll=unroll,
    )
    model((ops.zeros((1, source_length), dtype="int32"), ops.zeros((1, target_length), dtype="int32")))
    return model


@keras.saving.register_keras_serializable(package="dlsite.seq2seq")
def masked_cross_entropy(y_true, y_pred):
    """Mean cross-entropy per target token, padding excluded (the book's target_weights)."""
    return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True, ignore_class=PAD_ID)


@keras.saving.register_keras_serializable(package="dlsite.seq2seq")
class Perplexity(keras.metrics.Metric):
    """exp(mean cross-entropy per non-padding target token) over all batches seen: the book's
    perplexity, of a whole epoch (or validation split) rather than of the last 100 steps."""

    def __init__(self, name="perplexity", **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "int32")
        weights = ops.cast(ops.not_equal(y_true, PAD_ID), "float32")
        losses = keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
        self.total.assign_add(ops.sum(losses * weights))
        self.count.assign_add(ops.sum(weights))

    def result(self):
        return ops.exp(self.total / ops.maximum(self.count, 1.0))

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)


def book_optimizer(*, name: str, learning_rate: float, decay_rate: float, decay_steps: int, clip_norm: float):
    """The book's SGD (learning rate x decay_rate every decay_steps steps, gradients clipped to a
    global norm) or Adam with the same schedule and clipping."""
    schedule = keras.optimizers.schedules.ExponentialDecay(
        learning_rate, decay_steps=decay_steps, decay_rate=decay_rate, staircase=True
    )
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=schedule, global_clipnorm=clip_norm)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=schedule, global_clipnorm=clip_norm)
    raise ValueError(f"optimizer: expected 'sgd' or 'adam', got {name!r}")
