"""Training loops of the chapter's models, each reporting per epoch through the RunContext.

`popularity` counts; `als` runs implicit's ALS one iteration at a time; `mf` and `bpr` follow the
book's sampling loops (5000 positives + 5 random negatives each per batch; 30 bootstrap samples of
15000 triples per "epoch"); the LSTM models are fitted with Keras on the book's 5-step windows. After
every epoch `evaluate(scorer)` gives the validation figures logged with the loss, and the loop saves a
checkpoint (factors, weights and optimizer state) from which a killed run resumes.

TensorFlow is imported inside the TF models' functions only; `als` needs implicit, not TF.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.pipelines.recommender.data import Encoded

if TYPE_CHECKING:
    from worker.runtime.context import RunContext

STATE_FILE = "state.npz"
Scorer = Callable[[np.ndarray], np.ndarray]  # user indices -> (n, items) scores
Evaluate = Callable[[Any], dict[str, float]]  # the trained thing so far -> validation figures


@dataclass
class Trained:
    scorer: Scorer
    factors: dict[str, np.ndarray] | None = None  # als, mf, bpr
    keras_model: Any = None  # lstm, lstm_user
    history: list[dict[str, float]] = field(default_factory=list)
    epochs_completed: int = 0
    stopped: bool = False


def popularity_counts(encoded: Encoded) -> np.ndarray:
    """Interactions per training item, unknown customers included (book: df_train.stockcode.value_counts())."""
    return np.bincount(encoded.train_items, weights=encoded.train_weights, minlength=encoded.num_items).astype(
        np.float32
    )


def train_popularity(ctx: RunContext, encoded: Encoded, params) -> Trained:
    counts = popularity_counts(encoded)
    return Trained(scorer=lambda users: np.broadcast_to(counts, (len(users), len(counts))), epochs_completed=0)


def factor_scorer(factors: dict[str, np.ndarray]) -> Scorer:
    user_factors, item_factors = factors["user_factors"], factors["item_factors"]
    item_bias = factors.get("item_bias")

    def score(users: np.ndarray) -> np.ndarray:
        scores = user_factors[users] @ item_factors.T  # book: U[uid_val].dot(I.T) + b_i
        return scores + item_bias if item_bias is not None else scores

    return score


def user_item_matrix(encoded: Encoded):
    """Known users x items, interactions summed (book: csr_matrix((ones, (uid, iid))))."""
    import scipy.sparse as sparse

    known = encoded.train_users >= 0
    return sparse.csr_matrix(
        (encoded.train_weights[known], (encoded.train_users[known], encoded.train_items[known])),
        shape=(encoded.num_users, encoded.num_items),
    )


# The loop shared by the factor models -------------------------------------------------------------


def _epochs(
    ctx: RunContext,
    params,
    *,
    run_epoch: Callable[[int], float | None],
    current: Callable[[], dict[str, np.ndarray]],
    restore: Callable[[dict[str, np.ndarray]], None],
    evaluate: Evaluate,
) -> tuple[list[dict[str, float]], int, bool]:
    """Epochs from the checkpoint (if any) to params.epochs; returns (history, epochs done, stopped)."""
    history: list[dict[str, float]] = []
    start = 0
    state = ctx.checkpoint_state()
    state_path = ctx.checkpoint_dir / STATE_FILE
    if state and state.get("model") == params.model and state_path.exists():
        with np.load(state_path) as arrays:
            restore({name: arrays[name] for name in arrays.files})
        start, history = int(state["epoch"]), list(state.get("history", []))
        ctx.log(f"resuming from the checkpoint after epoch {start}")
    last_checkpoint = time.monotonic()
    for epoch in range(start, params.epochs):
        if ctx.should_stop():
            return history, epoch, True
        started = time.monotonic()
        loss = run_epoch(epoch)
        if ctx.should_stop():  # cut short: not an epoch's numbers
            ctx.log(f"epoch {epoch + 1}/{params.epochs} interrupted: not recorded")
            return history, epoch, True
        step = epoch + 1
        values = evaluate(current())
        if loss is not None:
            values["loss"] = loss
        values["epoch_seconds"] = time.monotonic() - started
        ctx.log_metrics(step, **values)
        history.append({"epoch": step, **values})
        ctx.progress(step, params.epochs, f"epoch {step}/{params.epochs}")
        ctx.log(f"epoch {step:02d}: precision: {values['precision_at_5']:.3f}")  # the book's line
        if time.monotonic() - last_checkpoint >= ctx.checkpoint_interval or step == params.epochs:
            np.savez(state_path, **current())
            ctx.save_checkpoint(step, epoch=step, model=params.model, history=history)
            last_checkpoint = time.monotonic()
    return history, params.epochs, False


# ALS (implicit) ------------------------------------------------------------------------------------


def train_als(ctx: RunContext, encoded: Encoded, params, evaluate: Evaluate) -> Trained:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    matrix = user_item_matrix(encoded)
    # One iteration per fit(): fit() continues from the factors it finds, so each call is an epoch.
    # implicit parallelises itself; a BLAS thread pool under it only contends (implicit warns).
    with threadpool_limits(1, "blas"):
        als = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            iterations=1,
            random_state=params.seed,
        )

    def current() -> dict[str, np.ndarray]:
        if als.user_factors is None:
            return {}
        return {"user_factors": np.asarray(als.user_factors), "item_factors": np.asarray(als.item_factors)}

    def restore(state: dict[str, np.ndarray]) -> None:
        als.user_factors, als.item_factors = state["user_factors"], state["item_factors"]

    def run_epoch(epoch: int) -> None:
        with threadpool_limits(1, "blas"):
            als.fit(matrix, show_progress=False)

    history, done, stopped = _epochs(
        ctx,
        params,
        run_epoch=run_epoch,
        current=current,
        restore=restore,
        evaluate=lambda factors: evaluate(factor_scorer(factors)),
    )
    factors = current()
    if not factors:  # stopped before the first iteration
        return Trained(scorer=lambda users: np.zeros((len(users), encoded.num_items), np.float32), stopped=True)
    return Trained(
        scorer=factor_scorer(factors), factors=factors, history=history, epochs_completed=done, stopped=stopped
    )


# MF with log-loss and BPR (TensorFlow) ---------------------------------------------------------------


def _model_state(model, optimizer) -> dict[str, np.ndarray]:
    state = {f"weight_{index}": variable.numpy() for index, variable in enumerate(model.weights)}
    state.update({f"optimizer_{index}": variable.numpy() for index, variable in enumerate(optimizer.variables)})
    return state


def _restore_model_state(model, optimizer, state: dict[str, np.ndarray]) -> None:
    for index, variable in enumerate(model.weights):
        variable.assign(state[f"weight_{index}"])
    for index, variable in enumerate(optimizer.variables):
        variable.assign(state[f"optimizer_{index}"])


def _train_factor_model(
    ctx: RunContext, params, model, optimizer, *, run_epoch: Callable[[int], float | None], evaluate: Evaluate
) -> Trained:
    """MF's or BPR's epochs (checkpointed with the optimizer's state, evaluated after each), scored by its
    factors."""
    history, done, stopped = _epochs(
        ctx,
        params,
        run_epoch=run_epoch,
        current=lambda: _model_state(model, optimizer),
        restore=lambda state: _restore_model_state(model, optimizer, state),
        evaluate=lambda state: evaluate(factor_scorer(model.factors())),
    )
    factors = model.factors()
    return Trained(
        scorer=factor_scorer(factors), factors=factors, history=history, epochs_completed=done, stopped=stopped
    )


def train_matrix_factorization(ctx: RunContext, encoded: Encoded, params, evaluate: Evaluate) -> Trained:
    import keras
    import tensorflow as tf

    from worker.pipelines.recommender.model import MatrixFactorization

    keras.utils.set_random_seed(params.seed)
    known = encoded.train_users >= 0  # book: df_train_user, the rows of known customers
    users, items = encoded.train_users[known], encoded.train_items[known]
    model = MatrixFactorization(encoded.num_users, encoded.num_items, params.factors, seed=params.seed)
    optimizer = keras.optimizers.Adam(learning_rate=params.learning_rate)
    optimizer.build(model.trainable_variables)
    train_step = model.make_train_step(optimizer, regularization=params.regularization)
    batches = -(-len(users) // params.batch_size)

    def run_epoch(epoch: int) -> float | None:
        rng = np.random.default_rng([params.seed, epoch])  # per epoch: a resumed run draws the same
        order = rng.permutation(len(users))
        losses = []
        for batch, start in enumerate(range(0, len(order), params.batch_size)):
            if ctx.should_stop():
                return None
            index = order[start : start + params.batch_size]
            negatives = len(index) * params.negatives
            # Book: negatives pair a uniformly random user with a uniformly random item.
            batch_users = np.concatenate([users[index], rng.integers(0, encoded.num_users, negatives)])
            batch_items = np.concatenate([items[index], rng.integers(0, encoded.num_items, negatives)])
            labels = np.concatenate([np.ones(len(index), np.float32), np.zeros(negatives, np.float32)])
            losses.append(
                float(
                    train_step(
                        tf.constant(batch_users, tf.int32), tf.constant(batch_items, tf.int32), tf.constant(labels)
                    )
                )
            )
            ctx.progress(epoch + (batch + 1) / batches, params.epochs, f"epoch {epoch + 1}/{params.epochs}")
        return float(np.mean(losses))

    return _train_factor_model(ctx, params, model, optimizer, run_epoch=run_epoch, evaluate=evaluate)


def train_bpr(ctx: RunContext, encoded: Encoded, params, evaluate: Evaluate) -> Trained:
    import keras
    import tensorflow as tf

    from worker.pipelines.recommender.model import BayesianPersonalizedRanking

    keras.utils.set_random_seed(params.seed)
    known = encoded.train_users >= 0
    users, items = encoded.train_users[known], encoded.train_items[known]
    model = BayesianPersonalizedRanking(encoded.num_users, encoded.num_items, params.factors, seed=params.seed)
    optimizer = keras.optimizers.Adam(learning_rate=params.learning_rate)
    optimizer.build(model.trainable_variables)
    train_step = model.make_train_step(optimizer, regularization=params.regularization)

    def run_epoch(epoch: int) -> float | None:
        rng = np.random.default_rng([params.seed, epoch])
        losses = []
        for step in range(params.steps_per_epoch):
            if ctx.should_stop():
                return None
            # Book: a bootstrap sample of training rows, one uniformly random item as each row's negative.
            index = rng.integers(0, len(users), params.batch_size)
            negatives = rng.integers(0, encoded.num_items, params.batch_size)
            losses.append(
                float(
                    train_step(
                        tf.constant(users[index], tf.int32),
                        tf.constant(items[index], tf.int32),
                        tf.constant(negatives, tf.int32),
                    )
                )
            )
            ctx.progress(
                epoch + (step + 1) / params.steps_per_epoch, params.epochs, f"epoch {epoch + 1}/{params.epochs}"
            )
        return float(np.mean(losses))

    return _train_factor_model(ctx, params, model, optimizer, run_epoch=run_epoch, evaluate=evaluate)


# LSTM session models ---------------------------------------------------------------------------------


def training_windows(encoded: Encoded, num_steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The book's (X, Y, U): 5-token windows of each training basket, Y shifted by one, U the user token.

    Book: pad_seq puts one 0 ("no item") in front, and right-pads a basket shorter than the window;
    prepare_train_data slides over it. Tokens are item index + 1; user tokens are user index + 1, 0
    for unknown customers (the book trains on them too).
    """
    tokens = encoded.train_items + 1
    user_tokens = encoded.train_users + 1
    bounds = np.flatnonzero(np.diff(encoded.train_baskets, prepend=-1, append=-1))
    inputs, targets, users = [], [], []
    for start, end in zip(bounds[:-1], bounds[1:]):
        sequence = np.concatenate([[0], tokens[start:end]])
        if len(sequence) <= num_steps:
            sequence = np.concatenate([sequence, np.zeros(num_steps - len(sequence) + 1, np.int64)])
        windows = np.lib.stride_tricks.sliding_window_view(sequence, num_steps + 1)
        inputs.append(windows[:, :-1])
        targets.append(windows[:, 1:])
        users.append(np.full(len(windows), user_tokens[start]))
    return (
        np.concatenate(inputs).astype(np.int32),
        np.concatenate(targets).astype(np.int32),
        np.concatenate(users).astype(np.int32),
    )


def last_tokens(histories: list[np.ndarray], num_steps: int) -> np.ndarray:
    """Each user's last num_steps training item tokens, left-padded with 0: what a static LSTM list reads."""
    result = np.zeros((len(histories), num_steps), np.int32)
    for user, history in enumerate(histories):
        tail = history[-num_steps:] + 1
        result[user, num_steps - len(tail) :] = tail
    return result


def lstm_scorer(model, user_last_tokens: np.ndarray, *, with_users: bool) -> Scorer:
    from worker.pipelines.recommender.model import next_item_logits

    def score(users: np.ndarray) -> np.ndarray:
        logits = next_item_logits(model, user_last_tokens[users], users + 1 if with_users else None)
        return logits[:, 1:]  # token 0 is "no item": never recommended

    return score


def _epoch_evaluation(ctx: RunContext, evaluate: Evaluate, history: list, epochs: int):
    """A Keras callback: validation figures after each complete epoch, logged next to Keras's loss."""
    import keras

    class EpochEvaluation(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if ctx.should_stop():  # an interrupted epoch is not recorded
                return
            values = evaluate(self.model)
            ctx.log_metrics(epoch + 1, **values)
            history.append({"epoch": epoch + 1, **values, **{key: float(value) for key, value in (logs or {}).items()}})
            ctx.log(f"epoch {epoch + 1}/{epochs}: " + ", ".join(f"{key}={value:.4f}" for key, value in values.items()))

    return EpochEvaluation()


def train_lstm(
    ctx: RunContext, encoded: Encoded, params, evaluate: Evaluate, *, histories: list[np.ndarray]
) -> Trained:
    import keras
    import tensorflow as tf

    from worker.pipelines.recommender.model import build_lstm, compile_lstm
    from worker.runtime.keras import resume_epoch

    keras.utils.set_random_seed(params.seed)
    with_users = params.model == "lstm_user"
    inputs, targets, users = training_windows(encoded, params.num_steps)
    model, initial_epoch = resume_epoch(ctx)
    if model is None:
        model = build_lstm(
            encoded.num_items + 1,
            num_users=encoded.num_users + 1 if with_users else None,
            embedding_size=params.embedding_size,
            hidden_size=params.hidden_size,
            num_layers=params.num_layers,
            init_scale=params.init_scale,
            seed=params.seed,
        )
        compile_lstm(model, learning_rate=params.learning_rate, max_grad_norm=params.max_grad_norm)
    features = (
        {"items": inputs, "users": np.repeat(users[:, np.newaxis], params.num_steps, axis=1)}
        if with_users
        else {"items": inputs}
    )
    # The book feeds each batch's final LSTM state into the next, shuffled and unrelated, batch; here
    # every window starts from the zero state, as it does when the model is used.
    dataset = (
        tf.data.Dataset.from_tensor_slices((features, targets))
        .shuffle(len(targets), seed=params.seed, reshuffle_each_iteration=True)
        .batch(
            params.batch_size, drop_remainder=len(targets) >= params.batch_size
        )  # book: skips the last partial batch
        .prefetch(tf.data.AUTOTUNE)
    )
    user_last = last_tokens(histories, params.num_steps)
    history: list[dict[str, float]] = []
    callbacks = [_epoch_evaluation(ctx, evaluate, history, params.epochs), *ctx.keras_callbacks(epochs=params.epochs)]
    ctx.log(
        f"training on {len(targets)} windows of {params.num_steps} steps, epochs {initial_epoch + 1}..{params.epochs}"
    )
    if initial_epoch < params.epochs:
        model.fit(
            dataset, epochs=params.epochs, initial_epoch=initial_epoch, callbacks=callbacks, verbose=0, shuffle=False
        )
    state = ctx.checkpoint_state() or {}
    return Trained(
        scorer=lstm_scorer(model, user_last, with_users=with_users),
        keras_model=model,
        history=history,
        epochs_completed=int(state.get("epoch", 0)),
        stopped=ctx.should_stop(),
    )
