"""Chapter 5, predicting tomorrow's price from the last 20 days: the `stock_forecast` pipeline.

Train the book's linear regressor or LSTM (or a GRU / SimpleRNN) on a series cut into windows of
the past W values, the first windows for training and the rest for testing, then report test MSE
and MAE beside the naive "tomorrow = today" forecast, with the forecast-vs-actual, error and
training-curve plots. As in the book, an epoch is one optimiser step on the whole training set and
prices go in raw unless `normalize` is set. Unlike the book, the naive baseline is computed
correctly (its formula broadcast an (N,) array against (N, 1); that figure is reported too,
labelled), and the saved model forecasts any recent history, several steps ahead if asked.

Importing this module stays cheap: TensorFlow, Keras and matplotlib are imported in `train` and
`load` only, so listing pipelines never loads them.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from worker.pipelines.base import (
    BuiltinDataset,
    DatasetKind,
    DatasetRef,
    Params,
    Pipeline,
    PredictInput,
    TrainResult,
)

if TYPE_CHECKING:
    from worker.runtime.context import RunContext

MODEL_FILE = "model.keras"
CONFIG_FILE = "forecaster.json"
CHECKPOINT_MODEL_FILE = "model.keras"
MAX_CURVE_POINTS = 200  # training-curve points logged per run, whatever the number of epochs
LOG_LINES = 10  # log lines per run about the training loss (the book printed every 100 steps)
MAX_HORIZON = 365

# The book's settings per experiment, from its four scripts. The cosine LSTM's are the code bundle's
# "after a hyperparameter optimization" values (the book prints only the log, to iteration 9900).
BOOK_SETTINGS: dict[tuple[str, str], dict[str, Any]] = {
    ("cosine", "linear"): {
        "epochs": 1000, "learning_rate": 0.1, "optimizer": "adam", "output_init_stddev": 1.0, "train_size": 250,
    },
    ("cosine", "recurrent"): {
        "epochs": 10000, "learning_rate": 0.5, "optimizer": "adagrad", "units": 20, "output_init_stddev": 1.0,
        "train_size": 250,
    },
    ("stock", "linear"): {
        "epochs": 20000, "learning_rate": 0.5, "optimizer": "adam", "output_init_stddev": 1.0, "train_size": 252,
    },
    ("stock", "recurrent"): {
        "epochs": 5000, "learning_rate": 0.1, "optimizer": "adagrad", "units": 256, "output_init_stddev": 10.0,
        "train_size": 252,
    },
}  # fmt: skip


# The recurrent models whose TF1 cell (BasicLSTMCell, BasicRNNCell) `cell_init="book"` reproduces;
# TF1's GRUCell is another GRU (reset before the recurrent matmul, gate biases of 1).
BOOK_INIT_MODELS = ("lstm", "rnn")


class StockForecastParams(Params):
    model: Literal["linear", "lstm", "gru", "rnn"] = Field(
        "lstm",
        description="linear: the book's regression_ANN; lstm: its RNN (BasicLSTMCell); gru and rnn (SimpleRNN): "
        "the book's follow-up question.",
    )
    preset: Literal["stock", "cosine"] = Field(
        "stock",
        description="Which of the book's experiments fills the unset settings below: stock (MSFT prices; linear lr "
        "0.5 for 20000 epochs, LSTM 256 units lr 0.1 for 5000 epochs, output stddev 10, 252 training windows) or "
        "cosine (linear lr 0.1 for 1000 epochs, LSTM 20 units lr 0.5 for 10000 epochs, 250 training windows).",
    )
    epochs: int | None = Field(
        None, gt=0, le=200_000, description="Full-batch optimiser steps, or passes over mini-batches (book: n_epochs)."
    )
    learning_rate: float | None = Field(None, gt=0, le=10, description="Optimiser step size (book: learning_rate).")
    # Not None for "the book's": a choice list offers no empty option, so a form would send "adam".
    optimizer: Literal["book", "adam", "adagrad"] = Field(
        "book",
        description="book: the book's per-experiment choice, tf.train.AdamOptimizer for the regression and "
        "AdagradOptimizer for the recurrent models; or adam, or adagrad.",
    )
    units: int | None = Field(
        None, gt=0, le=1024, description="Cells per recurrent layer (book: n_embeddings); unused by linear."
    )
    recurrent_layers: int = Field(1, ge=1, le=4, description="Stacked recurrent layers (the book: one).")
    cell_init: Literal["keras", "book"] = Field(
        "keras",
        description="Recurrent kernels' initialisation. keras: Glorot-uniform input kernel, orthogonal recurrent "
        "kernel; book: TF1's BasicLSTMCell / BasicRNNCell, one Glorot-uniform kernel over [input, state] (lstm and "
        "rnn only; on the book's MSFT and cosine runs it scored no closer to the book, docs/RESULTS.md).",
    )
    output_init_stddev: float | None = Field(
        None,
        gt=0,
        le=100,
        description="Stddev of the truncated-normal output weights (book: 1.0, and 10.0 for the stock LSTM).",
    )
    batch_size: int | None = Field(
        None, gt=0, le=65536, description="Windows per step; unset: the whole training set, the book's full batch."
    )
    window: int = Field(
        20, ge=1, le=365, description="Past values per window (book: feat_dimension / time_dimension)."
    )
    train_size: int | None = Field(
        None, gt=0, description="Windows for training, the first ones of the series (book: train_size 252 or 250)."
    )
    test_size: int | None = Field(
        None, gt=0, description="Windows for testing after the training ones; unset: all the rest, as in the book."
    )
    validation_split: float = Field(
        0.0, ge=0, le=0.5, description="Share of the training windows, the last ones, held out for validation "
        "(not in the book)."
    )  # fmt: skip
    normalize: bool = Field(
        False,
        description="Standardise values with the training windows' mean and stddev (the book fed raw prices); "
        "metrics stay in the series' units.",
    )
    seed: int = Field(
        101, ge=0, lt=2**32, description="Seeds the weights and the cosine noise (book: tf.set_random_seed(101), "
        "np.random.seed(101))."
    )  # fmt: skip
    date_column: str | None = Field(
        None, max_length=200, description="CSV date column; unset: Date if present, else rows in file order."
    )
    value_column: str | None = Field(
        None, max_length=200, description="CSV column to forecast; unset: Adj. Close (the book's) if present, else "
        "the only other column."
    )  # fmt: skip
    start: datetime.date | None = Field(None, description="First date kept (book: from_date, 2015-01-01).")
    end: datetime.date | None = Field(None, description="Last date kept (book: to_date, 2016-12-31).")
    cosine_points: int = Field(
        520, ge=2, le=1_000_000, description="Length of the built-in cosine (book: train_size + test_size + "
        "feat_dimension = 520)."
    )  # fmt: skip
    cosine_frequency: float = Field(0.01, gt=0, le=0.5, description="Built-in cosine (book: frequency 0.01).")
    cosine_noise: float = Field(0.1, ge=0, le=10, description="Built-in cosine's uniform noise (book: noise 0.1).")

    @model_validator(mode="before")
    @classmethod
    def _fill_the_books_settings(cls, raw: Any) -> Any:
        """Settings left unset take the book's values for (preset, model)."""
        if not isinstance(raw, dict):
            return raw
        family = "linear" if raw.get("model", "lstm") == "linear" else "recurrent"
        settings = BOOK_SETTINGS.get((raw.get("preset", "stock"), family))
        if settings is None:  # an invalid preset: the field's own validation says so
            return raw
        resolved = dict(raw)
        for key, value in settings.items():
            if resolved.get(key) is None or (key == "optimizer" and resolved[key] == "book"):
                resolved[key] = value
        return resolved

    @model_validator(mode="after")
    def _check_dates(self) -> StockForecastParams:
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError("start must not be after end")
        return self

    @model_validator(mode="after")
    def _check_cell_init(self) -> StockForecastParams:
        if self.cell_init == "book" and self.model not in BOOK_INIT_MODELS:
            raise ValueError(f"cell_init book is TF1's LSTM and SimpleRNN initialisation; use keras for {self.model}")
        return self


def build_cosine_dataset(cache_root: Path, params: StockForecastParams) -> tuple[Path, str]:
    from worker.pipelines.stock_forecast.data import build_cosine

    return build_cosine(
        cache_root, points=params.cosine_points, frequency=params.cosine_frequency, noise=params.cosine_noise,
        seed=params.seed,
    )


def build_msft_dataset(cache_root: Path, params: StockForecastParams) -> tuple[Path, str]:
    from worker.pipelines.stock_forecast.data import build_msft

    return build_msft(cache_root)


class StockForecastPipeline(Pipeline):
    name = "stock_forecast"
    title = "Stock price forecasting"
    description = (
        "Chapter 5: a linear regressor or an LSTM predicts the next value of a series from the previous 20 "
        "(the book's noisy cosine, MSFT prices); reports test MSE and MAE against the naive 'tomorrow = today' "
        "forecast, and forecasts recursively from any recent history."
    )
    Params = StockForecastParams
    dataset_kinds = (
        DatasetKind(
            name="price_csv",
            title="Price CSV",
            description="A zip of one CSV: a Quandl WIKI download (Date, ..., Adj. Close; newest first) or any CSV "
            "with a date column and a value column (chosen with the params date_column / value_column), or an "
            "undated series, one value per row in time order.",
            inspect="worker.pipelines.stock_forecast.data:inspect_price_csv",
        ),
    )
    builtin_datasets = (
        BuiltinDataset(
            name="msft",
            kind="price_csv",
            title="MSFT daily prices 2000-2013",
            description="Microsoft's daily prices 2000-03-01..2013-03-01 (3270 trading days, adjusted close) from "
            "the bokeh-sampledata package, in Quandl WIKI column names.",
            build=build_msft_dataset,
        ),
        BuiltinDataset(
            name="cosine",
            kind="price_csv",
            title="The book's noisy cosine",
            description="cos(2*pi*0.01*t) plus uniform noise in [-0.1, 0.1], seed 101, 520 points "
            "(250 training + 250 test windows of 20): the book's reproducible toy series.",
            build=build_cosine_dataset,
        ),
    )
    default_dataset = "msft"
    predict_mode = "sync"

    def train(self, ctx: RunContext, dataset: DatasetRef, params: StockForecastParams) -> TrainResult:
        import keras

        from worker.pipelines.stock_forecast import data

        if ctx.should_stop():
            ctx.log("cancelled before reading the data")
            return TrainResult(metrics={}, summary={"stopped": True, "epochs_completed": 0})
        series = data.read_series(
            dataset.path, date_column=params.date_column, value_column=params.value_column, start=params.start,
            end=params.end,
        )
        features, labels = data.format_dataset(series.values, params.window)
        split = split_windows(len(labels), params)
        # Standardised with what training sees only: the values its windows and labels cover.
        scaler = Scaler.fit(series.values[: split.fit.stop + params.window]) if params.normalize else Scaler()
        ctx.log(
            f"{series.source}: {len(series.values)} values of {series.value_column}, {len(labels)} windows of "
            f"{params.window}: {len(split.fit)} train, {len(split.validation)} validation, {len(split.test)} test"
        )
        keras.utils.set_random_seed(params.seed)  # book: tf.set_random_seed(101)
        model, start_epoch, history = _model_to_train(ctx, params)

        x_fit, y_fit = _inputs(features[split.fit], scaler, params), _targets(labels[split.fit], scaler)
        validation = None
        if len(split.validation):
            validation = (_inputs(features[split.validation], scaler, params), labels[split.validation])
        started = time.monotonic()
        epochs_done = _fit(ctx, model, x_fit, y_fit, validation, scaler, params, start_epoch, history)
        train_seconds = time.monotonic() - started

        stopped = epochs_done < params.epochs
        model_dir = _save_model(model, ctx.artifacts_dir / "model", params, scaler, series)
        summary = {
            "series": series.source,
            "value_column": series.value_column,
            "values": len(series.values),
            "first_date": series.dates[0] if series.dates else None,
            "last_date": series.dates[-1] if series.dates else None,
            "windows": len(labels),
            "train_windows": len(split.fit),
            "validation_windows": len(split.validation),
            "test_windows": len(split.test),
            "parameters": model.count_params(),
            "epochs_completed": epochs_done,
            "train_seconds": round(train_seconds, 2),
            "normalize": params.normalize,
            "stopped": stopped,
        }
        if stopped:
            ctx.log("cancelled: the model so far is saved, evaluation skipped")
            return TrainResult(metrics={}, model_dir=model_dir, summary=summary)

        metrics = _evaluate(ctx, model, features, labels, split, scaler, series, history, params)
        return TrainResult(metrics=metrics, model_dir=model_dir, summary=summary)

    def load(self, model_dir: Path) -> StockForecastPredictor:
        return StockForecastPredictor(Path(model_dir))


# Data preparation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowSplit:
    """Ranges of window indices: fit (trained on), validation (its tail), test (after training)."""

    fit: range
    validation: range
    test: range


def split_windows(windows: int, params: StockForecastParams) -> WindowSplit:
    """The book's split by window index: the first train_size windows train, the next ones test."""
    train_size = params.train_size
    if train_size >= windows:
        raise ValueError(
            f"train_size: the series gives {windows} windows of {params.window} values; train_size "
            f"{train_size} leaves none for testing"
        )
    test_end = windows if params.test_size is None else train_size + params.test_size
    if test_end > windows:
        raise ValueError(
            f"test_size: only {windows - train_size} windows follow the {train_size} training ones, "
            f"test_size asks for {params.test_size}"
        )
    held_out = math.ceil(train_size * params.validation_split) if params.validation_split else 0
    if held_out >= train_size:
        raise ValueError(
            f"validation_split: holding out {held_out} of {train_size} training windows leaves none to fit"
        )
    return WindowSplit(
        fit=range(0, train_size - held_out), validation=range(train_size - held_out, train_size),
        test=range(train_size, test_end),
    )


@dataclass(frozen=True)
class Scaler:
    """(value - mean) / scale and back; the identity unless fitted."""

    mean: float = 0.0
    scale: float = 1.0

    @classmethod
    def fit(cls, values: np.ndarray) -> Scaler:
        scale = float(np.std(values))
        return cls(mean=float(np.mean(values)), scale=scale if scale > 0 else 1.0)

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=np.float64) - self.mean) / self.scale

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64) * self.scale + self.mean


def _inputs(features: np.ndarray, scaler: Scaler, params: StockForecastParams) -> np.ndarray:
    x = scaler.transform(features).astype(np.float32)
    return x if params.model == "linear" else x[:, :, np.newaxis]  # book: X[:, :, np.newaxis] for the LSTM


def _targets(labels: np.ndarray, scaler: Scaler) -> np.ndarray:
    return scaler.transform(labels).astype(np.float32).reshape(-1, 1)  # book: y.reshape(-1, 1)


# Training --------------------------------------------------------------------------------------


def _model_to_train(ctx: RunContext, params: StockForecastParams):
    """(compiled model, epochs already done, training curve so far): the checkpoint's, or a fresh one."""
    import keras

    from worker.pipelines.stock_forecast.model import build_optimizer

    state = ctx.checkpoint_state()
    checkpoint = ctx.checkpoint_dir / CHECKPOINT_MODEL_FILE
    if state and checkpoint.exists():
        ctx.log(f"resuming from the checkpoint after epoch {state['epoch']}")
        # Compiled with its optimizer: the Adam / Adagrad accumulators continue where they were.
        return keras.models.load_model(checkpoint), int(state["epoch"]), state.get("history", {})
    model = _build(params)
    if ctx.initial_model_dir is not None:  # continuing a parent run: its weights, a fresh optimizer
        parent = keras.models.load_model(ctx.initial_model_dir / MODEL_FILE, compile=False)
        try:
            model.set_weights(parent.get_weights())
        except ValueError:
            raise ValueError(
                "the parent run's model has another architecture (model, units, window, recurrent_layers)"
            ) from None
        ctx.log("starting from the parent run's weights")
    # Compiled only so that a checkpoint saves the optimizer's state with the weights.
    model.compile(optimizer=build_optimizer(params.optimizer, params.learning_rate), loss="mse")
    return model, 0, {}


def _build(params: StockForecastParams):
    from worker.pipelines.stock_forecast.model import build_model

    return build_model(
        model=params.model, window=params.window, units=params.units, recurrent_layers=params.recurrent_layers,
        output_init_stddev=params.output_init_stddev, cell_init=params.cell_init, seed=params.seed,
    )


def _train_step(model):
    """One optimiser step on a batch; returns the batch's MSE and MAE before the step (as the book's
    `sess.run([cost, train_op])` printed them).

    A compiled step rather than `model.fit`: fit spends ~20 ms per epoch setting up, which would make
    the book's 20000 one-step epochs 60 times slower than the steps themselves.
    """
    import tensorflow as tf

    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)

    @tf.function(input_signature=[spec, tf.TensorSpec((None, 1), tf.float32)])
    def train_step(x, y):
        with tf.GradientTape() as tape:
            error = y - model(x, training=True)
            loss = tf.reduce_mean(tf.square(error))  # book: cost = tf.reduce_mean(tf.square(y_tf - y_pred))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss, tf.reduce_mean(tf.abs(error))

    return train_step


def _fit(ctx, model, x_fit, y_fit, validation, scaler: Scaler, params, start_epoch: int, history: dict) -> int:
    """Train from `start_epoch` to `params.epochs`, reporting and checkpointing; returns epochs done."""
    step = _train_step(model)
    log_every = max(1, params.epochs // MAX_CURVE_POINTS)
    print_every = max(1, params.epochs // LOG_LINES)
    batch_size = params.batch_size or len(x_fit)
    last_checkpoint = time.monotonic()
    if start_epoch < params.epochs:
        ctx.log(f"training a {params.model} model, epochs {start_epoch + 1}..{params.epochs}, batch {batch_size}")
    for epoch in range(start_epoch, params.epochs):
        if ctx.should_stop():
            return epoch
        if batch_size >= len(x_fit):
            loss, mae = (float(value) for value in step(x_fit, y_fit))
        else:
            # Mini-batches in a fresh order each epoch, reproducible on resume: seeded by (seed, epoch).
            order = np.random.default_rng([params.seed, epoch]).permutation(len(x_fit))
            totals = np.zeros(2)
            for begin in range(0, len(order), batch_size):
                batch = order[begin : begin + batch_size]
                totals += len(batch) * np.array([float(value) for value in step(x_fit[batch], y_fit[batch])])
            loss, mae = totals / len(order)
        done = epoch + 1
        if done % log_every and done != params.epochs:
            continue
        # Reported in the series' units: with normalize, the scaled errors times the scale.
        values = {"train_mse": loss * scaler.scale**2, "train_mae": mae * scaler.scale}
        if validation is not None:
            predicted = scaler.inverse(np.asarray(model(validation[0], training=False))[:, 0])
            values.update(_errors(validation[1], predicted, prefix="val_"))
        ctx.log_metrics(done, **values)
        for key, value in values.items():
            history.setdefault(key, []).append([done, value])
        ctx.progress(done, params.epochs, f"epoch {done}/{params.epochs}")
        if done % print_every == 0 or done == params.epochs or done == 1:
            shown = ", ".join(f"{key}={value:.6g}" for key, value in values.items())
            ctx.log(f"epoch {done}/{params.epochs}: {shown}")
        due = time.monotonic() - last_checkpoint >= ctx.checkpoint_interval
        if (due or done == params.epochs) and not ctx.should_stop():
            model.save(ctx.checkpoint_dir / CHECKPOINT_MODEL_FILE)
            ctx.save_checkpoint(done, epoch=done, history=history)
            last_checkpoint = time.monotonic()
    return params.epochs


def _errors(actual: np.ndarray, predicted: np.ndarray, *, prefix: str = "") -> dict[str, float]:
    error = np.asarray(actual, dtype=np.float64) - np.asarray(predicted, dtype=np.float64)
    return {f"{prefix}mse": float(np.mean(np.square(error))), f"{prefix}mae": float(np.mean(np.abs(error)))}


def naive_errors(features: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The "tomorrow = today" forecast's errors, correctly and as the book's formula computed them.

    The book's evaluate_ts took `features[:, -1]` (N,) minus `y_true` (N, 1): numpy broadcast that to
    an (N, N) matrix of every pair's difference, whose mean is far larger than the real baseline's.
    """
    today = features[:, -1]
    column = labels.reshape(-1, 1)
    return {
        **_errors(labels, today, prefix="naive_"),
        "naive_mse_book_formula": float(np.mean(np.square(today - column))),
        "naive_mae_book_formula": float(np.mean(np.abs(today - column))),
    }


def _save_model(model, model_dir: Path, params: StockForecastParams, scaler: Scaler, series) -> Path:
    """The model without its optimizer state, and what the predictor needs to use it."""
    model_dir.mkdir(parents=True, exist_ok=True)
    serving = _build(params)  # a fresh, uncompiled copy: no optimizer variables in the file
    serving.set_weights(model.get_weights())
    serving.save(model_dir / MODEL_FILE)
    config = {
        "model": params.model,
        "window": params.window,
        "normalize": params.normalize,
        "mean": scaler.mean,
        "scale": scaler.scale,
        "series": series.source,
        "value_column": series.value_column,
        "last_date": series.dates[-1] if series.dates else None,
        # The series' latest window: a ready-made example input for the predictor.
        "example_history": [float(value) for value in series.values[-params.window :]],
    }
    (model_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return model_dir


# Evaluation ------------------------------------------------------------------------------------


def _evaluate(
    ctx, model, features, labels, split: WindowSplit, scaler: Scaler, series, history, params
) -> dict[str, float]:
    """The book's evaluate_ts on the test windows, its plots, and the predictions as a CSV."""
    test_features, actual = features[split.test], labels[split.test]
    predicted = scaler.inverse(np.asarray(model(_inputs(test_features, scaler, params), training=False))[:, 0])
    metrics = {**_errors(actual, predicted), **naive_errors(test_features, actual)}
    ctx.log_metrics(step=params.epochs, **metrics)
    ctx.log(
        f"test mse={metrics['mse']:.6g} mae={metrics['mae']:.6g}; naive mse={metrics['naive_mse']:.6g} "
        f"mae={metrics['naive_mae']:.6g} (the book's formula: mse={metrics['naive_mse_book_formula']:.6g})"
    )

    absolute_error = np.abs(actual - predicted)
    # The book's trendline of the absolute error (np.polyfit, degree 1): does the model drift?
    slope, intercept = (0.0, 0.0)
    if len(actual) > 1:
        slope, intercept = np.polyfit(np.arange(len(absolute_error)), absolute_error, deg=1)
    positions = [index + params.window for index in split.test]  # label i is value i + W
    dates = [series.dates[position] for position in positions] if series.dates else None

    report = {
        "metrics": metrics,
        "labels": {
            "mse": "test MSE of the model, in the series' units",
            "mae": "test MAE of the model",
            "naive_mse": "test MSE of the naive forecast tomorrow = today",
            "naive_mae": "test MAE of the naive forecast",
            "naive_mse_book_formula": "the book's evaluate_ts benchmark: (N,) minus (N, 1) broadcast to every pair; "
            "not a baseline, reported for comparison with the book",
            "naive_mae_book_formula": "the same broadcast, absolute errors",
        },
        "error_trend": {"slope": float(slope), "intercept": float(intercept)},
        "test_windows": len(actual),
        "first_test_label": dates[0] if dates else positions[0],
        "normalization": {"enabled": params.normalize, "mean": scaler.mean, "scale": scaler.scale},
    }
    report_path = ctx.artifacts_dir / "evaluation.json"
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    ctx.log_artifact(report_path, kind="report", metadata={"title": "Test metrics and the naive baseline"})

    predictions_path = ctx.artifacts_dir / "predictions.csv"
    with predictions_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "date", "actual", "predicted", "naive", "abs_error"])
        for row, position in enumerate(positions):
            writer.writerow([
                position, dates[row] if dates else "", repr(float(actual[row])), repr(float(predicted[row])),
                repr(float(test_features[row, -1])), repr(float(absolute_error[row])),
            ])  # fmt: skip
    ctx.log_artifact(predictions_path, kind="report", metadata={"title": "Test predictions, one row per day"})

    plots = (
        ("forecast.png", "Predicted (red) vs real (blue)",
         lambda path: _plot_forecast(path, series, positions, predicted)),
        ("test_error.png", "Prediction error (absolute) and trendline",
         lambda path: _plot_error(path, absolute_error, np.abs(actual - test_features[:, -1]), slope, intercept)),
        ("training_curve.png", "Training curve", lambda path: _plot_training_curve(path, history)),
    )  # fmt: skip
    for filename, title, draw in plots:
        path = ctx.artifacts_dir / filename
        draw(path)
        ctx.log_artifact(path, kind="plot", metadata={"title": title})
    return metrics


def _figure():
    # A bare Figure renders with Agg and touches no pyplot global state (safe in a worker).
    from matplotlib.figure import Figure

    return Figure(figsize=(10, 4.5), dpi=100)


def _plot_forecast(path: Path, series, positions: list[int], predicted: np.ndarray) -> None:
    figure = _figure()
    axes = figure.add_subplot()
    x = np.array(series.dates, dtype="datetime64[D]") if series.dates else np.arange(len(series.values))
    axes.plot(x, series.values, "b", linewidth=1, label=f"actual ({series.value_column})")
    axes.plot(x[positions], predicted, "r--", linewidth=1, label="predicted, one day ahead")
    axes.axvline(x[positions[0]], color="grey", linewidth=0.8, linestyle=":")
    axes.set(title="Predicted (red) vs real (blue)", xlabel="date" if series.dates else "time step",
             ylabel=series.value_column)  # fmt: skip
    axes.legend(loc="best")
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path)


def _plot_error(path: Path, error: np.ndarray, naive_error: np.ndarray, slope: float, intercept: float) -> None:
    figure = _figure()
    axes = figure.add_subplot()
    steps = np.arange(len(error))
    axes.plot(steps, naive_error, color="0.7", linewidth=0.8, label="naive forecast")
    axes.plot(steps, error, "r", linewidth=1, label="model")
    axes.plot(steps, slope * steps + intercept, "--", color="k", label=f"model trend ({slope:+.3g} per step)")
    axes.set(title="Prediction error (absolute) and trendline", xlabel="test window",
             ylabel="Prediction error L1 norm")  # fmt: skip
    axes.legend(loc="best")
    figure.tight_layout()
    figure.savefig(path)


def _plot_training_curve(path: Path, history: dict) -> None:
    figure = _figure()
    axes = figure.add_subplot()
    for key, style in (("train_mse", "b"), ("val_mse", "g")):
        if history.get(key):
            steps, values = zip(*history[key])
            axes.plot(steps, values, style, linewidth=1, label=key)
    axes.set_yscale("log")
    axes.set(title="Training curve (MSE in the series' units)", xlabel="epoch (optimiser step with full batches)",
             ylabel="MSE")  # fmt: skip
    axes.legend(loc="best")
    figure.tight_layout()
    figure.savefig(path)


# Prediction ------------------------------------------------------------------------------------


class StockForecastPredictor:
    """Forecasts the next values of a history with a model folder written by `train`."""

    def __init__(self, model_dir: Path):
        import keras
        import tensorflow as tf

        config = json.loads((model_dir / CONFIG_FILE).read_text())
        self.window = int(config["window"])
        self.model_kind = config["model"]
        self.scaler = Scaler(mean=float(config["mean"]), scale=float(config["scale"]))
        model = keras.models.load_model(model_dir / MODEL_FILE, compile=False)
        # The traced forward pass: model.predict() spends tens of ms per call setting up, and a
        # forecast of N days calls the model N times.
        self._forward = tf.function(lambda x: model(x, training=False)).get_concrete_function(
            tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
        )

    def predict(self, inputs: PredictInput) -> dict[str, Any]:
        """{"prediction": the next value, "forecast": the next `horizon` values, recursively}."""
        history = _read_history(inputs.data.get("history"), self.window)
        horizon = _read_horizon(inputs.data.get("horizon", 1))
        window = list(self.scaler.transform(history[-self.window :]))
        forecast = []
        for _ in range(horizon):
            x = np.array([window], dtype=np.float32)
            if self.model_kind != "linear":
                x = x[:, :, np.newaxis]
            scaled = float(np.asarray(self._forward(x))[0, 0])
            forecast.append(float(self.scaler.inverse(scaled)))
            window = window[1:] + [scaled]  # recursive: each forecast becomes the newest input
        return {"prediction": forecast[0], "forecast": forecast, "horizon": horizon, "window": self.window}


def _read_history(history: Any, window: int) -> np.ndarray:
    if not isinstance(history, (list, tuple)):
        raise ValueError(f"history: required, a list of at least {window} numbers, oldest first")
    if len(history) < window:
        raise ValueError(f"history: {len(history)} values given, the model needs the last {window}")
    values = []
    for index, value in enumerate(history):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"history: item {index} is {value!r}, not a finite number")
        values.append(float(value))
    return np.array(values, dtype=np.float64)


def _read_horizon(horizon: Any) -> int:
    if isinstance(horizon, str) and horizon.strip().isdigit():
        horizon = int(horizon)  # from a form field
    if isinstance(horizon, bool) or not isinstance(horizon, int) or not 1 <= horizon <= MAX_HORIZON:
        raise ValueError(f"horizon: expected a whole number from 1 to {MAX_HORIZON}, got {horizon!r}")
    return horizon


pipeline = StockForecastPipeline()
