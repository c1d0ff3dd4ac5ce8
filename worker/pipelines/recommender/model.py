"""The chapter's TensorFlow models: matrix factorisation (log-loss), BPR, and the LSTM session models.

MF and BPR are factor tables trained by the book's own sampling loops (random negatives, bootstrap
triples), so they are small `keras.Model`s with a `tf.function` training step each; the LSTM models
are functional Keras models trained with `fit` on the book's 5-step windows. Imported only when a
pipeline trains or predicts with them.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf


def _uniform(dim: int, seed: int):
    # Book: embed() draws U(-sqrt(2/dim), sqrt(2/dim)): +-0.125 for 128 factors, +-1.41 for biases.
    scale = math.sqrt(2.0 / dim)
    return keras.initializers.RandomUniform(-scale, scale, seed=seed)


class _FactorTables(keras.Model):
    """What MF and BPR share for scoring: user and item factors and an item bias."""

    def factors(self) -> dict[str, np.ndarray]:
        # MF's global and user biases do not change a user's ranking: the book drops them when scoring.
        return {
            "user_factors": self.user_factors.numpy(),
            "item_factors": self.item_factors.numpy(),
            "item_bias": self.item_bias.numpy(),
        }


class MatrixFactorization(_FactorTables):
    """r_ui = global + b_u + b_i + p_u . q_i, trained as binary classification (book: log-loss MF)."""

    def __init__(self, num_users: int, num_items: int, factors: int, *, seed: int = 1):
        super().__init__()
        self.user_factors = self.add_weight(
            shape=(num_users, factors), initializer=_uniform(factors, seed), name="user_factors"
        )
        self.user_bias = self.add_weight(shape=(num_users,), initializer=_uniform(1, seed + 1), name="user_bias")
        self.item_factors = self.add_weight(
            shape=(num_items, factors), initializer=_uniform(factors, seed + 2), name="item_factors"
        )
        self.item_bias = self.add_weight(shape=(num_items,), initializer=_uniform(1, seed + 3), name="item_bias")
        self.global_bias = self.add_weight(shape=(), initializer="zeros", name="global_bias")

    def call(self, users, items):
        user_vectors = tf.gather(self.user_factors, users)
        item_vectors = tf.gather(self.item_factors, items)
        return (
            self.global_bias
            + tf.gather(self.user_bias, users)
            + tf.gather(self.item_bias, items)
            + tf.reduce_sum(user_vectors * item_vectors, axis=1)
        )

    def make_train_step(self, optimizer, *, regularization: float):
        @tf.function(reduce_retracing=True)
        def train_step(users, items, labels):
            with tf.GradientTape() as tape:
                logits = self(users, items)
                # Book: sigmoid then tf.losses.log_loss; from logits is the same loss without the clipping.
                loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))
                # Book: lambda * sum of squares over the batch's looked-up rows (negatives included).
                penalty = regularization * (
                    tf.reduce_sum(tf.square(tf.gather(self.user_factors, users)))
                    + tf.reduce_sum(tf.square(tf.gather(self.item_factors, items)))
                )
                total = loss + penalty
            variables = self.trainable_variables
            optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
            return loss

        return train_step


class BayesianPersonalizedRanking(_FactorTables):
    """x_uij = (b_i + p_u . q_i) - (b_j + p_u . q_j); no user or global bias, they cancel (book: BPR-Opt)."""

    def __init__(self, num_users: int, num_items: int, factors: int, *, seed: int = 1):
        super().__init__()
        self.user_factors = self.add_weight(
            shape=(num_users, factors), initializer=_uniform(factors, seed), name="user_factors"
        )
        self.item_factors = self.add_weight(
            shape=(num_items, factors), initializer=_uniform(factors, seed + 2), name="item_factors"
        )
        self.item_bias = self.add_weight(shape=(num_items,), initializer=_uniform(1, seed + 3), name="item_bias")

    def call(self, users, items):
        return tf.gather(self.item_bias, items) + tf.reduce_sum(
            tf.gather(self.user_factors, users) * tf.gather(self.item_factors, items), axis=1
        )

    def make_train_step(self, optimizer, *, regularization: float):
        @tf.function(reduce_retracing=True)
        def train_step(users, positives, negatives):
            with tf.GradientTape() as tape:
                difference = self(users, positives) - self(users, negatives)
                # Book: -mean(log(sigmoid(diff))); log_sigmoid is the same without underflow.
                loss = -tf.reduce_mean(tf.math.log_sigmoid(difference))
                # Book: the bias terms are summed without squaring; kept as written.
                penalty = regularization * (
                    tf.reduce_sum(tf.square(tf.gather(self.user_factors, users)))
                    + tf.reduce_sum(tf.square(tf.gather(self.item_factors, positives)))
                    + tf.reduce_sum(tf.square(tf.gather(self.item_factors, negatives)))
                    + tf.reduce_sum(tf.gather(self.item_bias, positives))
                    + tf.reduce_sum(tf.gather(self.item_bias, negatives))
                )
                total = loss + penalty
            variables = self.trainable_variables
            optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
            return loss

        return train_step


def build_lstm(
    num_tokens: int,
    *,
    num_users: int | None = None,
    embedding_size: int = 200,
    hidden_size: int = 200,
    num_layers: int = 2,
    init_scale: float = 0.1,
    seed: int = 1,
) -> keras.Model:
    """The book's PTB-style next-item model: embeddings, 2 x LSTM(200), logits over every item token.

    Inputs are token sequences of any length (token 0: the "no item" start/padding); with `num_users`
    a second input carries the user's token at every step (the book tiles it over the steps) and its
    200-d embedding is concatenated to the item's. Book bug fixed: the user table has one row per user
    (the book sized it by the number of items).
    """

    def initializer(offset: int):
        # Book: one uniform(-0.1, 0.1) initializer over the scope. A seeded Keras initializer repeats its
        # values on every call, so each weight gets a seed of its own.
        return keras.initializers.RandomUniform(-init_scale, init_scale, seed=seed + offset)

    items = keras.Input(shape=(None,), dtype="int32", name="items")
    inputs = [items]
    hidden = keras.layers.Embedding(
        num_tokens, embedding_size, embeddings_initializer=initializer(0), name="item_embedding"
    )(items)
    if num_users is not None:
        users = keras.Input(shape=(None,), dtype="int32", name="users")
        inputs.append(users)
        user_vectors = keras.layers.Embedding(
            num_users, embedding_size, embeddings_initializer=initializer(1), name="user_embedding"
        )(users)
        hidden = keras.layers.Concatenate(name="user_and_item")([user_vectors, hidden])
    for layer in range(num_layers):
        # Book: BasicLSTMCell(forget_bias=0.0): no forget-gate bias added.
        hidden = keras.layers.LSTM(
            hidden_size,
            return_sequences=True,
            unit_forget_bias=False,
            kernel_initializer=initializer(2 + 2 * layer),
            recurrent_initializer=initializer(3 + 2 * layer),
            name=f"lstm_{layer + 1}",
        )(hidden)
    logits = keras.layers.Dense(num_tokens, kernel_initializer=initializer(100), name="next_item")(hidden)
    return keras.Model(inputs, logits, name="lstm_user" if num_users is not None else "lstm")


def compile_lstm(model: keras.Model, *, learning_rate: float, max_grad_norm: float) -> None:
    # Book: GradientDescentOptimizer(1.0) after clip_by_global_norm(grads, 5).
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=learning_rate, global_clipnorm=max_grad_norm),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )


def next_item_logits(
    model: keras.Model, sequences: np.ndarray, users: np.ndarray | None, *, batch_tokens: int = 4096
) -> np.ndarray:
    """Logits after the last step of each (equal-length) sequence, in batches of about `batch_tokens`."""
    batch = max(1, batch_tokens // max(1, sequences.shape[1]))
    forward = tf.function(lambda inputs: model(inputs, training=False)[:, -1, :], reduce_retracing=True)
    outputs = []
    for start in range(0, len(sequences), batch):
        inputs = [tf.constant(sequences[start : start + batch], tf.int32)]
        if users is not None:
            inputs.append(
                tf.constant(np.repeat(users[start : start + batch, np.newaxis], sequences.shape[1], axis=1), tf.int32)
            )
        outputs.append(forward(inputs).numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, model.output_shape[-1]), np.float32)


def sequence_top_k(
    model: keras.Model, sequences: list[np.ndarray], users: np.ndarray | None, k: int, *, batch_tokens: int = 4096
) -> list[np.ndarray]:
    """The k most likely next tokens (never 0) at every step of each token sequence.

    The LSTM state runs along each whole sequence, as a session recommender's should. Sequences are
    batched by length and padded on the right, which cannot change the earlier steps' outputs.
    """
    forward = tf.function(
        lambda inputs: tf.math.top_k(model(inputs, training=False)[:, :, 1:], k=k).indices + 1, reduce_retracing=True
    )
    order = sorted(range(len(sequences)), key=lambda index: len(sequences[index]))
    results: list[np.ndarray] = [np.zeros((0, k), np.int64)] * len(sequences)
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end + 1 - start) * len(sequences[order[end]]) <= batch_tokens:
            end += 1
        batch = order[start:end]
        length = max(1, len(sequences[batch[-1]]))
        tokens = np.zeros((len(batch), length), np.int32)
        for row, index in enumerate(batch):
            tokens[row, : len(sequences[index])] = sequences[index]
        inputs = [tf.constant(tokens)]
        if users is not None:
            inputs.append(tf.constant(np.repeat(users[batch, np.newaxis], length, axis=1).astype(np.int32)))
        predicted = forward(inputs).numpy()
        for row, index in enumerate(batch):
            results[index] = predicted[row, : len(sequences[index])].astype(np.int64)
        start = end
    return results
