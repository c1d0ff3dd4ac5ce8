"""The stock_forecast pipeline: params, the models, training, cancel, resume, prediction."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.worker.pipelines.stock_forecast.conftest import TINY_PARAMS, train_tiny
from worker.pipelines.base import ParamsError, PredictInput, get_pipeline
from worker.runtime.local import LocalRunContext



@pytest.fixture
def pipeline():
    return get_pipeline("stock_forecast")


# Params ------------------------------------------------------------------------------------------


BOOK_SETTINGS = {
    # (preset, model): (epochs, learning_rate, optimizer, units, output_init_stddev, train_size)
    ("stock", "lstm"): (5000, 0.1, "adagrad", 256, 10.0, 252),
    ("stock", "linear"): (20000, 0.5, "adam", None, 1.0, 252),
    ("cosine", "lstm"): (10000, 0.5, "adagrad", 20, 1.0, 250),
    ("cosine", "linear"): (1000, 0.1, "adam", None, 1.0, 250),
    ("stock", "gru"): (5000, 0.1, "adagrad", 256, 10.0, 252),
}


@pytest.mark.parametrize(("preset", "model"), list(BOOK_SETTINGS))
def test_unset_settings_are_the_books_per_experiment(pipeline, preset, model):
    params = pipeline.resolve_params({"preset": preset, "model": model})

    resolved = (params.epochs, params.learning_rate, params.optimizer, params.units, params.output_init_stddev,
                params.train_size)  # fmt: skip
    assert resolved == BOOK_SETTINGS[(preset, model)]
    assert (params.window, params.seed, params.normalize, params.batch_size) == (20, 101, False, None)


def test_defaults_and_explicit_values(pipeline):
    defaults = pipeline.resolve_params(None)
    explicit = pipeline.resolve_params({"model": "linear", "epochs": 7, "learning_rate": 0.2})

    assert (defaults.model, defaults.preset) == ("lstm", "stock")
    assert (explicit.epochs, explicit.learning_rate, explicit.train_size) == (7, 0.2, 252)
    # As a form sends them: strings, and the optimizer choice list's default.
    from_form = pipeline.resolve_params({"model": "gru", "optimizer": "book", "epochs": "12"})
    assert (from_form.optimizer, from_form.epochs, from_form.units) == ("adagrad", 12, 256)
    assert pipeline.resolve_params({"model": "lstm", "optimizer": "adam"}).optimizer == "adam"
    assert (defaults.cell_init, from_form.cell_init) == ("keras", "keras")
    assert pipeline.resolve_params({"model": "rnn", "cell_init": "book"}).cell_init == "book"
    # The stored params validate again to the same values (the runner re-reads them).
    assert pipeline.Params.model_validate(explicit.model_dump(mode="json")) == explicit
    assert pipeline.default_dataset == "msft"
    assert {dataset.name: dataset.kind for dataset in pipeline.builtin_datasets} == {"msft": "price_csv", "cosine": "price_csv"}


@pytest.mark.parametrize(
    ("raw", "errors"),
    [
        ({"n_epochs": 10}, {"n_epochs": ["Unknown parameter."]}),
        ({"model": "arima"}, {"model": ["Input should be 'linear', 'lstm', 'gru' or 'rnn'"]}),
        ({"preset": "bitcoin"}, {"preset": ["Input should be 'stock' or 'cosine'"]}),
        ({"epochs": 0}, {"epochs": ["Input should be greater than 0"]}),
        ({"optimizer": "sgd"}, {"optimizer": ["Input should be 'book', 'adam' or 'adagrad'"]}),
        ({"validation_split": 0.9}, {"validation_split": ["Input should be less than or equal to 0.5"]}),
        ({"start": "2016-01-01", "end": "2015-01-01"}, {"params": ["Value error, start must not be after end"]}),
        ({"start": "yesterday"}, {"start": ["Input should be a valid date or datetime, input is too short"]}),
        ({"cell_init": "he"}, {"cell_init": ["Input should be 'keras' or 'book'"]}),
        ({"model": "gru", "cell_init": "book"},
         {"params": ["Value error, cell_init book is TF1's LSTM and SimpleRNN initialisation; use keras for gru"]}),
    ],
)
def test_invalid_params_are_rejected_by_field(pipeline, raw, errors):
    with pytest.raises(ParamsError) as error:
        pipeline.resolve_params(raw)
    assert error.value.errors == errors


# Models ------------------------------------------------------------------------------------------


@pytest.mark.tf
@pytest.mark.parametrize(
    ("kwargs", "count", "input_shape"),
    [
        ({"model": "linear"}, 21, (None, 20)),
        ({"model": "lstm", "units": 256, "output_init_stddev": 10.0}, 264_449, (None, 20, 1)),
        ({"model": "lstm", "units": 64}, 16_961, (None, 20, 1)),
        ({"model": "lstm", "units": 20}, 1_781, (None, 20, 1)),
        ({"model": "gru", "units": 8}, 3 * (8 * (8 + 1) + 2 * 8) + 9, (None, 20, 1)),
        ({"model": "rnn", "units": 8}, 8 * (8 + 1 + 1) + 9, (None, 20, 1)),
        ({"model": "lstm", "units": 8, "recurrent_layers": 2}, 4 * 8 * 10 + 4 * 8 * 17 + 9, (None, 20, 1)),
    ],
)
def test_the_models_have_the_books_sizes(kwargs, count, input_shape):
    from worker.pipelines.stock_forecast.model import build_model

    model = build_model(window=20, **kwargs)

    assert model.count_params() == count
    assert model.input_shape == input_shape and model.output_shape == (None, 1)


@pytest.mark.tf
def test_the_output_layer_is_truncated_normal_with_the_books_stddev():
    import keras

    from worker.pipelines.stock_forecast.model import build_model

    keras.utils.set_random_seed(101)
    weights, bias = build_model(model="lstm", window=20, units=256, output_init_stddev=10.0).get_layer("output").get_weights()

    assert np.all(np.abs(weights) <= 20.0) and 7.0 < weights.std() < 10.0  # cut at 2 stddev: std 8.8
    assert bias.tolist() == [0.0]


@pytest.mark.tf
@pytest.mark.parametrize(
    "kwargs",
    [
        {"model": "linear"},
        {"model": "lstm", "units": 6, "cell_init": "book", "output_init_stddev": 10.0},
        {"model": "lstm", "units": 6, "cell_init": "keras"},
        {"model": "gru", "units": 6},
        {"model": "rnn", "units": 6, "cell_init": "book"},
        {"model": "lstm", "units": 6, "recurrent_layers": 2, "cell_init": "book"},
    ],
)
def test_a_seeded_model_does_not_depend_on_pythons_global_random_generator(kwargs):
    # A worker's reporting thread draws from `random` while a run builds its model.
    import random

    from worker.pipelines.stock_forecast.model import build_model

    first = build_model(window=5, seed=101, **kwargs)
    random.random()
    second = build_model(window=5, seed=101, **kwargs)
    other = build_model(window=5, seed=102, **kwargs)

    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights(), strict=True))
    assert not np.array_equal(first.get_weights()[0], other.get_weights()[0])
    # Each initializer has a seed of its own: no two random kernels are the same draw.
    kernels = [weights for weights in first.get_weights() if weights.ndim == 2]
    assert len({weights.ravel()[0] for weights in kernels}) == len(kernels)


@pytest.mark.tf
@pytest.mark.parametrize(("model", "gates"), [("lstm", 4), ("rnn", 1)])
def test_the_books_cell_init_is_tf1s_joint_glorot_kernel(model, gates):
    from worker.pipelines.stock_forecast.model import build_model

    units = 64
    layer = build_model(model=model, window=20, units=units, cell_init="book", seed=101).get_layer(f"{model}1")
    kernel, recurrent, bias = layer.get_weights()

    # TF1: one kernel (1 + units, gates * units), glorot_uniform over that joint shape.
    limit = np.sqrt(6 / (1 + units + gates * units))
    joint = np.concatenate([kernel, recurrent])
    assert joint.shape == (1 + units, gates * units)
    assert np.abs(joint).max() <= limit and np.abs(joint).max() > 0.99 * limit
    assert joint.std() == pytest.approx(limit / np.sqrt(3), rel=0.02)  # uniform's sd, not orthogonal's
    # A zero bias, and BasicLSTMCell's forget_bias=1.0 on the forget gate (Keras' order: i, f, c, o).
    expected_bias = np.zeros(gates * units)
    if model == "lstm":
        expected_bias[units : 2 * units] = 1.0
    assert bias.tolist() == expected_bias.tolist()


@pytest.mark.tf
def test_keras_cell_init_keeps_the_orthogonal_recurrent_kernel():
    from worker.pipelines.stock_forecast.model import build_model

    layer = build_model(model="lstm", window=20, units=16, cell_init="keras", seed=101).get_layer("lstm1")
    recurrent = layer.get_weights()[1]

    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(16), atol=1e-5)


@pytest.mark.tf
def test_the_keras_lstm_computes_tf1s_basic_lstm_cell():
    """The book's cell written out (TF1's BasicLSTMCell.call) on Keras' weights laid out as TF1's."""
    from worker.pipelines.stock_forecast.model import build_model

    units, window = 5, 7
    model = build_model(model="lstm", window=window, units=units, cell_init="book", seed=3)
    kernel, recurrent, bias = model.get_layer("lstm1").get_weights()
    head, head_bias = model.get_layer("output").get_weights()
    i, f, c, o = (slice(k * units, (k + 1) * units) for k in range(4))
    # TF1's layout: rows [x, h], columns i, j, f, o; forget_bias added as a constant, not in the bias.
    joint = np.concatenate([kernel, recurrent])
    joint = np.concatenate([joint[:, i], joint[:, c], joint[:, f], joint[:, o]], axis=1)
    tf1_bias = np.concatenate([bias[i], bias[c], bias[f] - 1.0, bias[o]])
    x = np.random.default_rng(0).normal(size=(3, window, 1)).astype(np.float32)

    def sigmoid(value):
        return 1 / (1 + np.exp(-value))

    state, output = np.zeros((3, units)), np.zeros((3, units))
    for step in range(window):
        gates = np.concatenate([x[:, step], output], axis=1) @ joint + tf1_bias
        input_gate, new_input, forget_gate, output_gate = np.split(gates, 4, axis=1)
        state = state * sigmoid(forget_gate + 1.0) + sigmoid(input_gate) * np.tanh(new_input)
        output = np.tanh(state) * sigmoid(output_gate)

    np.testing.assert_allclose(np.asarray(model(x)), output @ head + head_bias, rtol=1e-4, atol=1e-5)


# Training ----------------------------------------------------------------------------------------


@pytest.mark.tf
def test_training_reports_the_books_metrics(trained):
    ctx, result = trained

    assert set(result.metrics) == {"mse", "mae", "naive_mse", "naive_mae", "naive_mse_book_formula", "naive_mae_book_formula"}
    assert set(ctx.metrics) == {"train_mse", "train_mae", *result.metrics}
    assert list(ctx.metrics["train_mse"]) == [1, 2, 3]
    assert ctx.metrics["mse"] == {3: result.metrics["mse"]}
    assert result.metrics["naive_mse"] < result.metrics["naive_mse_book_formula"]
    assert result.summary["train_windows"] == 40 and result.summary["test_windows"] == 80 - 8 - 40
    assert result.summary["parameters"] == 4 * 4 * (4 + 1 + 1) + 5
    assert result.summary["epochs_completed"] == 3 and result.summary["stopped"] is False


@pytest.mark.tf
def test_training_writes_plots_reports_model_and_checkpoint(trained):
    ctx, result = trained

    published = {path.name: kind for path, kind, _ in ctx.artifacts}
    assert published == {
        "evaluation.json": "report",
        "predictions.csv": "report",
        "forecast.png": "plot",
        "test_error.png": "plot",
        "training_curve.png": "plot",
    }
    for name in published:
        assert (ctx.artifacts_dir / name).stat().st_size > 0
    report = json.loads((ctx.artifacts_dir / "evaluation.json").read_text())
    assert report["metrics"] == result.metrics
    assert "broadcast" in report["labels"]["naive_mse_book_formula"]
    rows = (ctx.artifacts_dir / "predictions.csv").read_text().splitlines()
    assert rows[0] == "index,date,actual,predicted,naive,abs_error"
    assert len(rows) == 1 + 32 and rows[1].startswith("48,,")  # the first test label is value 40 + 8
    assert sorted(path.name for path in result.model_dir.iterdir()) == ["forecaster.json", "model.keras"]
    config = json.loads((result.model_dir / "forecaster.json").read_text())
    assert (config["model"], config["window"], config["mean"], config["scale"]) == ("lstm", 8, 0.0, 1.0)
    assert len(config["example_history"]) == 8
    assert ctx.checkpoints == [1, 2, 3]
    assert ctx.checkpoint_state()["epoch"] == 3


@pytest.mark.tf
@pytest.mark.parametrize("model", ["linear", "gru", "rnn"])
def test_each_model_trains(tmp_path, cosine_tiny, model):
    ctx, result = train_tiny(tmp_path, cosine_tiny, model=model, epochs=2)

    assert list(ctx.metrics["train_mse"]) == [1, 2]
    assert np.isfinite(result.metrics["mse"]) and result.metrics["mse"] > 0
    assert json.loads((result.model_dir / "forecaster.json").read_text())["model"] == model


@pytest.mark.tf
def test_mini_batches_validation_and_normalisation(tmp_path, cosine_tiny):
    ctx, result = train_tiny(
        tmp_path, cosine_tiny, model="gru", epochs=2, batch_size=16, validation_split=0.25, normalize=True
    )

    assert set(ctx.metrics) >= {"train_mse", "val_mse", "val_mae"}
    assert (result.summary["train_windows"], result.summary["validation_windows"]) == (30, 10)
    config = json.loads((result.model_dir / "forecaster.json").read_text())
    assert config["normalize"] is True and config["scale"] != 1.0
    # Metrics stay in the series' units: the naive baseline is the same as without normalisation.
    _, raw = train_tiny(tmp_path / "raw", cosine_tiny, model="linear", epochs=1)
    assert result.metrics["naive_mse"] == raw.metrics["naive_mse"]


@pytest.mark.tf
def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, cosine_tiny):
    _, straight = train_tiny(tmp_path / "straight", cosine_tiny, model="lstm", epochs=4)
    first, _ = train_tiny(tmp_path / "first", cosine_tiny, model="lstm", epochs=2)
    shutil.copytree(first.checkpoint_dir, tmp_path / "second" / "checkpoint")

    second, resumed = train_tiny(tmp_path / "second", cosine_tiny, model="lstm", epochs=4)

    assert "[info] resuming from the checkpoint after epoch 2" in second.log_lines
    assert list(second.metrics["train_mse"]) == [3, 4]
    assert resumed.summary["epochs_completed"] == 4
    # The optimizer's accumulators came back too: the same weights as without the interruption.
    assert resumed.metrics["mse"] == pytest.approx(straight.metrics["mse"], rel=1e-5)
    history = json.loads((tmp_path / "second" / "checkpoint" / "checkpoint.json").read_text())["history"]
    assert [step for step, _ in history["train_mse"]] == [1, 2, 3, 4]


class _CancelAfterTheFirstEpoch(LocalRunContext):
    def log_metrics(self, step, **values):
        super().log_metrics(step, **values)
        self.cancel()


@pytest.mark.tf
def test_cancel_stops_training_and_keeps_the_model(tmp_path, cosine_tiny):
    ctx, result = train_tiny(tmp_path, cosine_tiny, _CancelAfterTheFirstEpoch, model="linear", epochs=50)

    assert list(ctx.metrics) == ["train_mse", "train_mae"] and list(ctx.metrics["train_mse"]) == [1]
    assert result.metrics == {}
    assert result.summary["stopped"] is True and result.summary["epochs_completed"] == 1
    assert (result.model_dir / "model.keras").exists()
    assert ctx.checkpoints == []


def test_cancel_before_training_reads_nothing(pipeline, tmp_path):
    from worker.pipelines.base import DatasetRef

    ctx = LocalRunContext(seed=101, work_dir=tmp_path, show_progress=False)
    ctx.cancel()

    result = pipeline.train(ctx, DatasetRef(tmp_path / "missing", "price_csv", "x", ""), pipeline.resolve_params({}))

    assert result.metrics == {} and result.model_dir is None
    assert result.summary == {"stopped": True, "epochs_completed": 0}


@pytest.mark.tf
def test_a_child_run_starts_from_its_parents_weights(tmp_path, cosine_tiny, trained):
    _, parent = trained

    class FromParent(LocalRunContext):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.initial_model_dir = parent.model_dir

    ctx, _ = train_tiny(tmp_path, cosine_tiny, FromParent, model="lstm", epochs=1)
    assert "[info] starting from the parent run's weights" in ctx.log_lines

    class FromOtherArchitecture(FromParent):
        pass

    with pytest.raises(ValueError, match="the parent run's model has another architecture"):
        train_tiny(tmp_path / "other", cosine_tiny, FromOtherArchitecture, model="lstm", units=5, epochs=1)


def test_a_series_too_short_for_the_split_is_a_clear_error(pipeline, tmp_path, cosine_tiny):
    with pytest.raises(ValueError, match="train_size: the series gives 72 windows of 8 values; train_size 72"):
        train_tiny(tmp_path, cosine_tiny, train_size=72)


# Prediction --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def predictor(trained):
    _, result = trained
    return get_pipeline("stock_forecast").load(result.model_dir)


HISTORY = [0.1 * day for day in range(12)]


@pytest.mark.tf
def test_predicts_the_next_value(predictor):
    output = predictor.predict(PredictInput(data={"history": HISTORY}))

    assert set(output) == {"prediction", "forecast", "horizon", "window"}
    assert isinstance(output["prediction"], float)
    assert output["forecast"] == [output["prediction"]]
    assert (output["horizon"], output["window"]) == (1, TINY_PARAMS["window"])


@pytest.mark.tf
def test_forecasts_recursively(predictor):
    output = predictor.predict(PredictInput(data={"history": HISTORY, "horizon": 5}))

    assert len(output["forecast"]) == 5
    # Step two is step one's forecast fed back as the newest value.
    second = predictor.predict(PredictInput(data={"history": [*HISTORY, output["forecast"][0]]}))
    assert output["forecast"][1] == pytest.approx(second["prediction"], rel=1e-6)
    # Only the last `window` values count.
    shorter = predictor.predict(PredictInput(data={"history": HISTORY[-8:], "horizon": 5}))
    assert shorter["forecast"] == output["forecast"]


@pytest.mark.tf
@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "history: required, a list of at least 8 numbers, oldest first"),
        ({"history": [1, 2, 3]}, "history: 3 values given, the model needs the last 8"),
        ({"history": [1, 2, 3, 4, 5, 6, 7, "x"]}, "history: item 7 is 'x', not a finite number"),
        ({"history": [1, 2, 3, 4, 5, 6, 7, float("nan")]}, "history: item 7 is nan, not a finite number"),
        ({"history": HISTORY, "horizon": 0}, "horizon: expected a whole number from 1 to 365, got 0"),
        ({"history": HISTORY, "horizon": 2.5}, "horizon: expected a whole number from 1 to 365, got 2.5"),
    ],
)
def test_prediction_rejects_bad_input(predictor, data, message):
    with pytest.raises(ValueError) as error:
        predictor.predict(PredictInput(data=data))
    assert str(error.value) == message


def test_the_new_run_form_as_a_browser_sends_it_gives_the_books_settings(pipeline):
    from apps.web.forms import param_fields, params_from_post

    schema = pipeline.params_schema()
    post = {}
    for field in param_fields(schema):
        if field.widget == "select":  # a browser sends the selected option, else the first
            post[field.input_id] = str(field.value) if str(field.value) in field.choices else field.choices[0]
        elif field.widget == "checkbox":
            if field.value:
                post[field.input_id] = "on"
        else:
            post[field.input_id] = "" if field.value is None else str(field.value)

    params, errors = params_from_post(schema, post)

    assert errors == {}
    assert pipeline.resolve_params(params) == pipeline.resolve_params({})
