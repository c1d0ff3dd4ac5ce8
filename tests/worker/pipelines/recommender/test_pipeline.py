"""The recommender pipeline: params, a tiny run of every model, resume, cancel, predict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from worker.pipelines.base import DatasetRef, ParamsError, PredictInput, get_pipeline
from worker.runtime.local import LocalRunContext

# Small models so that a run takes a second or two; the books' sizes are checked separately.
TINY = {"factors": 8, "embedding_size": 8, "hidden_size": 8, "split": "per_user", "k": 5}
TINY_BY_MODEL = {
    "popularity": {},
    "als": {"epochs": 2},
    "mf": {"epochs": 2, "batch_size": 100},
    "bpr": {"epochs": 2, "batch_size": 100, "steps_per_epoch": 3},
    "lstm": {"epochs": 1, "batch_size": 20, "num_layers": 1},
    "lstm_user": {"epochs": 1, "batch_size": 20, "num_layers": 1},
}
STATIC_KEYS = {"precision_at_5", "recall_at_5", "ndcg_at_5", "map_at_5", "coverage_at_5"}
BASELINE_KEYS = {f"baseline_{key}" for key in STATIC_KEYS | {"top5_accuracy"}}


@pytest.fixture
def pipeline():
    return get_pipeline("recommender")


def train(folder: Path, work_dir: Path, model: str, *, kind: str = "interactions", ctx=None, **overrides):
    pipeline = get_pipeline("recommender")
    params = pipeline.resolve_params({"model": model, **TINY, **TINY_BY_MODEL[model], **overrides})
    ctx = ctx or LocalRunContext(seed=params.seed, work_dir=work_dir, show_progress=False)
    result = pipeline.train(ctx, DatasetRef(folder, kind, "tiny", "0" * 64), params)
    ctx.close()
    return ctx, result


# Params ------------------------------------------------------------------------------------------


def test_defaults_are_the_books(pipeline):
    defaults = pipeline.resolve_params(None).model_dump(mode="json")

    assert {
        key: defaults[key]
        for key in ("model", "epochs", "batch_size", "learning_rate", "seed", "factors", "regularization", "negatives")
    } == {
        "model": "mf",
        "epochs": 10,
        "batch_size": 5000,
        "learning_rate": 0.005,
        "seed": 0,
        "factors": 128,
        "regularization": 1e-7,
        "negatives": 5,
    }
    assert (defaults["split"], defaults["train_end"], defaults["validation_end"]) == (
        "auto",
        "2011-10-09",
        "2011-11-09",
    )
    bpr = pipeline.resolve_params({"model": "bpr"})
    assert (bpr.epochs, bpr.batch_size, bpr.learning_rate, bpr.steps_per_epoch) == (75, 15000, 0.0005, 30)
    als = pipeline.resolve_params({"model": "als"})
    assert (als.factors, als.regularization, als.epochs) == (128, 1e-6, 15)
    lstm = pipeline.resolve_params({"model": "lstm_user"})
    assert (
        lstm.epochs,
        lstm.batch_size,
        lstm.learning_rate,
        lstm.num_steps,
        lstm.hidden_size,
        lstm.embedding_size,
        lstm.num_layers,
        lstm.max_grad_norm,
        lstm.init_scale,
    ) == (1, 20, 1.0, 5, 200, 200, 2, 5.0, 0.1)
    assert pipeline.resolve_params({"model": "bpr", "epochs": 3}).epochs == 3  # given values win
    assert pipeline.default_dataset == "movielens_small"
    assert [kind.name for kind in pipeline.dataset_kinds] == ["online_retail", "movielens", "interactions"]


@pytest.mark.parametrize(
    ("raw", "errors"),
    [
        ({"model": "svd"}, {"model": ["Input should be 'popularity', 'als', 'mf', 'bpr', 'lstm' or 'lstm_user'"]}),
        ({"num_factors": 64}, {"num_factors": ["Unknown parameter."]}),
        ({"epochs": 0}, {"epochs": ["Input should be greater than 0"]}),
        ({"split": "random"}, {"split": ["Input should be 'auto', 'dates', 'last_days', 'ratio' or 'per_user'"]}),
        (
            {"train_end": "2012-01-01"},
            {"params": ["Value error, split=dates: train_end must be before validation_end"]},
        ),
    ],
)
def test_invalid_params_are_rejected_by_field(pipeline, raw, errors):
    with pytest.raises(ParamsError) as error:
        pipeline.resolve_params(raw)
    assert error.value.errors == errors


@pytest.mark.tf
def test_the_models_are_the_books():
    from worker.pipelines.recommender.model import MatrixFactorization, build_lstm

    assert build_lstm(101).count_params() == 101 * 200 + 2 * 4 * (200 * 200 + 200 * 200 + 200) + 200 * 101 + 101
    with_users = build_lstm(101, num_users=11)
    # The user table has a row per user (the book's had one per item); the first LSTM reads 400-d inputs.
    assert with_users.get_layer("user_embedding").input_dim == 11
    assert (
        with_users.count_params()
        == 101 * 200
        + 11 * 200
        + 4 * (400 * 200 + 200 * 200 + 200)
        + 4 * (200 * 200 + 200 * 200 + 200)
        + 200 * 101
        + 101
    )
    mf = MatrixFactorization(7, 9, 128)
    assert sum(int(variable.numpy().size) for variable in mf.weights) == 7 * 128 + 7 + 9 * 128 + 9 + 1
    assert float(abs(mf.item_factors.numpy()).max()) <= (2 / 128) ** 0.5  # book: U(-sqrt(2/dim), sqrt(2/dim))


# Exact figures on the tiny Online Retail file ---------------------------------------------------------


def test_popularity_on_the_retail_file_scores_exactly(retail_folder, tmp_path):
    ctx, result = train(
        retail_folder,
        tmp_path,
        "popularity",
        kind="online_retail",
        split="dates",
        train_end="2010-12-02",
        validation_end="2010-12-03",
    )

    # Train counts 22633: 1, 71053: 2, 85123A: 2. Invoice 536369 (customer 13047) bought 22633 and 85123A,
    # 536370 (unknown customer) 71053: all 3 among the 3 items there are, so 3 hits of 2 x 5.
    assert result.metrics["precision_at_5"] == 0.3
    assert result.metrics["recall_at_5"] == 1.0
    assert result.metrics["top5_accuracy"] == 1.0
    assert result.metrics["lift_precision_at_5"] == 1.0
    assert result.metrics["precision_at_5_known_users"] == 0.4  # 536369 alone: 2 hits of 1 x 5
    assert result.metrics["lift_precision_at_5_known_users"] == 1.0
    assert (result.metrics["evaluated_users"], result.metrics["evaluated_items"]) == (1.0, 3.0)
    assert result.summary["split"] == "dates" and result.summary["exclude_seen"] is False
    assert ctx.metrics["baseline_precision_at_5"] == {0: 0.3, 1: 0.3}  # before training and with the final figures
    predictor = get_pipeline("recommender").load(result.model_dir)
    answer = predictor.predict(PredictInput(data={"user_id": 17850, "k": 2, "exclude_seen": False}))
    assert [item["item"] for item in answer["recommendations"]] == ["71053", "85123A"]
    assert answer["recommendations"][0] == {"item": "71053", "title": "WHITE METAL LANTERN", "score": 2.0}
    assert [item["item"] for item in answer["history"]] == ["22633", "71053", "85123A"]  # latest first


# A tiny run of every model ------------------------------------------------------------------------------


def check_run(ctx, result, model: str):
    assert STATIC_KEYS | BASELINE_KEYS <= set(result.metrics)
    for key in STATIC_KEYS:
        assert 0.0 <= result.metrics[key] <= 1.0
    assert result.summary["split"] == "per_user" and result.summary["exclude_seen"] is True
    assert result.summary["evaluated_users"] == 24
    assert result.metrics["evaluated_users"] == 24.0
    published = {path.name: kind for path, kind, _ in ctx.artifacts}
    assert published["evaluation.json"] == "report" and published["comparison.png"] == "plot"
    report = json.loads((ctx.artifacts_dir / "evaluation.json").read_text())
    assert report["baseline_popularity"]["precision_at_5"] == result.metrics["baseline_precision_at_5"]

    predictor = get_pipeline("recommender").load(result.model_dir)
    answer = predictor.predict(PredictInput(data={"user_id": "u3", "k": 4}))
    assert answer["fallback"] is None and len(answer["recommendations"]) == 4
    assert set(answer["recommendations"][0]) == {"item", "title", "score"}
    seen = {item["item"] for item in answer["history"]}
    assert not seen & {item["item"] for item in answer["recommendations"]}  # exclude_seen by default
    cold = predictor.predict(PredictInput(data={"user_id": "nobody", "k": 3}))
    assert cold["fallback"] == "popularity" and cold["message"] == "unknown user 'nobody': the most popular items"
    assert [item["item"] for item in cold["recommendations"]] == [
        item["item"]
        for item in predictor.predict(PredictInput(data={"user_id": "nobody-else", "k": 3}))["recommendations"]
    ]
    assert predictor.predict(PredictInput(data={"search": "u1", "limit": 3}))["users"][0]["user_id"] == "u1"
    with pytest.raises(ValueError, match="k: expected an integer from 1 to 100"):
        predictor.predict(PredictInput(data={"user_id": "u3", "k": 0}))
    with pytest.raises(ValueError, match="user_id: required"):
        predictor.predict(PredictInput(data={}))
    return predictor


def test_popularity_run(interactions_folder, tmp_path):
    ctx, result = train(interactions_folder, tmp_path, "popularity")

    check_run(ctx, result, "popularity")
    assert result.metrics["precision_at_5"] == result.metrics["baseline_precision_at_5"]
    assert ctx.checkpoints == []


def test_als_run_checkpoints_each_iteration_and_beats_popularity(interactions_folder, tmp_path):
    ctx, result = train(interactions_folder, tmp_path, "als", epochs=3)

    predictor = check_run(ctx, result, "als")
    assert list(ctx.metrics["precision_at_5"]) == [1, 2, 3]
    assert ctx.checkpoints == [1, 2, 3]
    assert result.summary["epochs_completed"] == 3
    # Three clusters of users and items: even a tiny ALS finds them, popularity cannot.
    assert result.metrics["recall_at_5"] > result.metrics["baseline_recall_at_5"]
    with pytest.raises(
        ValueError, match="history: only the lstm and lstm_user models take a history; this is a als model"
    ):
        predictor.predict(PredictInput(data={"history": ["i1"]}))


def test_als_resumes_from_its_checkpoint(interactions_folder, tmp_path):
    first, _ = train(interactions_folder, tmp_path / "first", "als", epochs=1)
    shutil.copytree(first.checkpoint_dir, tmp_path / "second" / "checkpoint")

    ctx, result = train(interactions_folder, tmp_path / "second", "als", epochs=2)

    assert "resuming from the checkpoint after epoch 1" in "\n".join(ctx.log_lines)
    assert list(ctx.metrics["loss"] if "loss" in ctx.metrics else ctx.metrics["epoch_seconds"]) == [2]
    assert ctx.checkpoints == [2]
    assert result.summary["epochs_completed"] == 2


@pytest.mark.tf
@pytest.mark.parametrize("model", ["mf", "bpr"])
def test_factor_models_run_with_loss_and_precision_per_epoch(interactions_folder, tmp_path, model):
    ctx, result = train(interactions_folder, tmp_path, model)

    check_run(ctx, result, model)
    assert list(ctx.metrics["loss"]) == [1, 2]
    assert list(ctx.metrics["precision_at_5"]) == [1, 2]
    assert ctx.checkpoint_state()["model"] == model and ctx.checkpoints == [1, 2]
    assert {path.name for path, _, _ in ctx.artifacts} == {
        "evaluation.json",
        "precision_per_epoch.png",
        "loss.png",
        "comparison.png",
    }
    assert sorted(path.name for path in result.model_dir.iterdir()) == [
        "factors.npz",
        "recommender.json",
        "user_items.npz",
    ]


@pytest.mark.tf
def test_mf_resumes_with_its_optimizer_state(interactions_folder, tmp_path):
    first, _ = train(interactions_folder, tmp_path / "first", "mf", epochs=1)
    shutil.copytree(first.checkpoint_dir, tmp_path / "second" / "checkpoint")

    ctx, result = train(interactions_folder, tmp_path / "second", "mf", epochs=2)

    assert "resuming from the checkpoint after epoch 1" in "\n".join(ctx.log_lines)
    assert list(ctx.metrics["loss"]) == [2]
    report = json.loads((ctx.artifacts_dir / "evaluation.json").read_text())
    assert [row["epoch"] for row in report["history"]] == [1, 2]  # the first attempt's epoch is kept


@pytest.mark.tf
@pytest.mark.parametrize("model", ["lstm", "lstm_user"])
def test_sequence_models_report_both_top5_accuracies_and_predict_next_items(interactions_folder, tmp_path, model):
    ctx, result = train(interactions_folder, tmp_path, model)

    predictor = check_run(ctx, result, model)
    assert 0.0 <= result.metrics["top5_accuracy"] <= 1.0
    assert 0.0 <= result.metrics["top5_accuracy_book_evaluation"] <= 1.0
    assert list(ctx.metrics["top5_accuracy"]) == [1]
    assert any("with the book's evaluation" in note for note in result.summary["notes"])
    assert (model == "lstm_user") == any(
        "user embedding table sized by users (25 rows)" in note for note in result.summary["notes"]
    )
    assert sorted(path.name for path in result.model_dir.iterdir()) == [
        "lstm.keras",
        "recommender.json",
        "user_items.npz",
    ]

    answer = predictor.predict(PredictInput(data={"history": ["i1", "i2", "not-an-item"], "k": 3, "user_id": "u1"}))
    assert answer["unknown_items"] == ["not-an-item"]
    assert len(answer["recommendations"]) == 3
    assert not {"i1", "i2"} & {item["item"] for item in answer["recommendations"]}
    assert predictor.predict(PredictInput(data={"history": [], "k": 2}))["recommendations"][0]["item"].startswith("i")


# Cancellation --------------------------------------------------------------------------------------------


def test_cancel_before_training_stops_before_reading_the_data(pipeline, tmp_path):
    ctx = LocalRunContext(seed=0, work_dir=tmp_path, show_progress=False)
    ctx.cancel()

    result = pipeline.train(ctx, DatasetRef(tmp_path / "missing", "interactions", "x", ""), pipeline.resolve_params({}))

    assert result.metrics == {} and result.model_dir is None
    assert result.summary == {"stopped": True, "epochs_completed": 0}


class _CancelOnFirstEpochProgress(LocalRunContext):
    def progress(self, done, total, message=""):
        if message.startswith("epoch"):
            self.cancel()


@pytest.mark.tf
def test_cancel_during_an_epoch_records_nothing_of_it(interactions_folder, tmp_path):
    ctx = _CancelOnFirstEpochProgress(seed=0, work_dir=tmp_path, show_progress=False)

    _, result = train(interactions_folder, tmp_path, "mf", ctx=ctx)

    assert result.metrics == {} and result.model_dir is None
    assert result.summary["stopped"] is True and result.summary["epochs_completed"] == 0
    assert "precision_at_5" not in ctx.metrics and ctx.checkpoints == []
    assert "epoch 1/2 interrupted: not recorded" in "\n".join(ctx.log_lines)


def test_a_split_with_nothing_to_validate_fails_naming_the_split(retail_folder, tmp_path):
    with pytest.raises(ValueError, match="split=dates: the validation set is empty"):
        train(retail_folder, tmp_path, "popularity", kind="online_retail", split="dates")
