"""Chapter 1, recognising traffic signs with a small CNN: the `traffic_signs` pipeline.

Train the book's network on GTSRB-layout folders (an upload, or the built-in synthetic signs):
preprocess to the 32x32 L channel, split 75/25 with the book's seed, Adam for 10 epochs in batches
of 256, then report test loss and accuracy, the per-class classification report and the two
confusion-matrix plots. Unlike the book, the trained model is saved with its preprocessing so that
single photos can be classified.

Importing this module stays cheap: TensorFlow, Keras, scikit-image and matplotlib are imported in
`train` and `load` only, so listing pipelines never loads them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from worker.pipelines.base import (
    BuiltinDataset,
    DatasetKind,
    DatasetRef,
    Params,
    Pipeline,
    PredictInput,
    TrainResult,
)
from worker.pipelines.traffic_signs.labels import GTSRB_LABELS, N_CLASSES

if TYPE_CHECKING:
    from worker.runtime.context import RunContext

MODEL_FILE = "model.keras"
PREPROCESSING_FILE = "preprocessing.json"
TOP_K = 5
LOAD_CHUNK = 500  # images preprocessed between two progress reports and cancel checks
PREPROCESSING_VERSION = 1  # part of the preprocessed-image cache's key: bump when preprocessing changes


class TrafficSignsParams(Params):
    epochs: int = Field(10, gt=0, le=1000, description="Passes over the training split (book: max_epochs).")
    batch_size: int = Field(256, gt=0, le=65536, description="Images per training step (book: batch_size).")
    learning_rate: float = Field(0.001, gt=0, le=1, description="Adam's learning rate, no decay (book: learning_rate).")
    seed: int = Field(
        101,
        ge=0,
        lt=2**32,
        description="Seeds numpy, Python, TensorFlow, the split and the synthetic images "
        "(book: np.random.seed(101) and train_test_split random_state=101).",
    )
    test_size: float = Field(
        0.25, gt=0, lt=1, description="Share of images held out for evaluation (book: train_test_split test_size)."
    )
    color_mode: Literal["lab_l", "yuv_y"] = Field(
        "lab_l", description="Grayscale conversion: CIELAB L (the book's) or YUV Y, the alternative it names."
    )
    roi_crop: bool = Field(
        False, description="Crop each training image to the ROI of its GT csv (the book does not crop)."
    )
    images_per_class: int = Field(
        150, gt=0, le=5000, description="Images per class of the built-in synthetic_signs dataset (not in the book)."
    )


def build_synthetic_signs_dataset(cache_root: Path, params: TrafficSignsParams) -> tuple[Path, str]:
    """The built-in dataset for these params: folder and content sha256 (generated once, cached)."""
    from worker.pipelines.traffic_signs.synthetic import build_synthetic_signs

    return build_synthetic_signs(cache_root, seed=params.seed, images_per_class=params.images_per_class)


class TrafficSignsPipeline(Pipeline):
    name = "traffic_signs"
    title = "Traffic sign recognition"
    description = (
        "Chapter 1: a small convolutional network classifies 32x32 grayscale images of traffic signs "
        "into the 43 GTSRB classes; reports test accuracy, a per-class report and confusion matrices."
    )
    Params = TrafficSignsParams
    dataset_kinds = (
        DatasetKind(
            name="gtsrb",
            title="GTSRB folders",
            description="A zip of class folders 00000..00042 holding .ppm/.png/.jpg images and optional "
            "GT-000NN.csv files (the GTSRB training layout), or images with a labelled GT-final_test.csv.",
            inspect="worker.pipelines.traffic_signs.data:inspect_gtsrb",
        ),
    )
    builtin_datasets = (
        BuiltinDataset(
            name="synthetic_signs",
            kind="gtsrb",
            title="Synthetic traffic signs",
            description="All 43 GTSRB classes drawn offline and photographed badly (perspective, light, "
            "blur, noise, clutter, occlusion), in the GTSRB folder layout; images_per_class per class.",
            build=build_synthetic_signs_dataset,
        ),
    )
    default_dataset = "synthetic_signs"
    predict_mode = "sync"

    def train(self, ctx: RunContext, dataset: DatasetRef, params: TrafficSignsParams) -> TrainResult:
        import keras
        from sklearn.model_selection import train_test_split

        from worker.pipelines.traffic_signs.model import build_model
        from worker.runtime.keras import resume_epoch

        started = time.monotonic()
        loaded = _load_images_cached(ctx, dataset, params)
        if loaded is None:
            ctx.log("cancelled while reading images")
            return TrainResult(metrics={}, summary={"stopped": True, "epochs_completed": 0})
        images, labels, layout = loaded
        load_seconds = time.monotonic() - started
        keras.utils.set_random_seed(params.seed)  # book: np.random.seed(101); Python's and TF's too

        # Book: a plain (not stratified) shuffle split of the indices with random_state=101.
        train_index, test_index = train_test_split(
            np.arange(len(labels)), test_size=params.test_size, random_state=params.seed
        )
        class_ids = sorted(int(class_id) for class_id in np.unique(labels))
        # One GPU (or the CPU), or a MirroredStrategy over the run's GPUs: variables made in its scope
        # are mirrored on each of them, and fit() splits every batch of batch_size images between them.
        strategy = ctx.distribution_strategy()
        replicas = strategy.num_replicas_in_sync
        train_data = _batches(images[train_index], labels[train_index], params, shuffle=True, replicas=replicas)
        test_data = _batches(images[test_index], labels[test_index], params, shuffle=False, replicas=replicas)

        with strategy.scope():
            model, initial_epoch = resume_epoch(ctx)
            if model is None:
                model = build_model(seed=params.seed)
                if ctx.initial_model_dir is not None:  # continuing a parent run: its weights, a fresh optimizer
                    model.set_weights(keras.models.load_model(ctx.initial_model_dir / MODEL_FILE).get_weights())
                    ctx.log("starting from the parent run's weights")
                model.compile(
                    optimizer=keras.optimizers.Adam(learning_rate=params.learning_rate),
                    loss=keras.losses.CategoricalCrossentropy(),
                    metrics=["accuracy"],
                )
        started = time.monotonic()
        if initial_epoch < params.epochs:
            ctx.log(
                f"training on {len(train_index)} images, validating on {len(test_index)}, "
                f"epochs {initial_epoch + 1}..{params.epochs}"
            )
            model.fit(
                train_data,
                validation_data=test_data,  # the book's held-out split: Keras logs val_loss, val_accuracy
                epochs=params.epochs,
                initial_epoch=initial_epoch,
                callbacks=ctx.keras_callbacks(epochs=params.epochs),
                shuffle=False,  # the tf.data pipeline reshuffles each epoch; Keras cannot shuffle it
                verbose=0,
            )
        train_seconds = time.monotonic() - started

        stopped = ctx.should_stop()
        model_dir = _save_model(model, ctx.artifacts_dir / "model", params, class_ids)
        state = ctx.checkpoint_state() or {}
        summary = {
            "layout": layout,
            "images": len(labels),
            "classes": len(class_ids),
            "train_images": len(train_index),
            "test_images": len(test_index),
            "parameters": model.count_params(),
            "epochs_completed": int(state.get("epoch", 0)),
            "load_seconds": round(load_seconds, 2),
            "train_seconds": round(train_seconds, 2),
            "stopped": stopped,
        }
        if stopped:
            ctx.log("cancelled: the model so far is saved, evaluation skipped")
            return TrainResult(metrics={}, model_dir=model_dir, summary=summary)

        metrics = _evaluate(ctx, model, images[test_index], labels[test_index], class_ids, params)
        return TrainResult(metrics=metrics, model_dir=model_dir, summary=summary)

    def load(self, model_dir: Path) -> TrafficSignsPredictor:
        return TrafficSignsPredictor(Path(model_dir))


# Training helpers ------------------------------------------------------------------------------


def _load_images_cached(ctx: RunContext, dataset: DatasetRef, params: TrafficSignsParams):
    """_load_images, remembered on the worker by dataset content and preprocessing.

    Reading and preprocessing the default 6,450 images takes seconds; the arrays (26 MB) load in
    milliseconds, so a warm worker's next run on the same data reaches its first step that much sooner.
    """
    from worker.pipelines.traffic_signs import data

    key = "-".join(
        [dataset.sha256, params.color_mode, f"roi{int(params.roi_crop)}", "x".join(map(str, data.IMAGE_SIZE)),
         f"aa{int(data.ANTI_ALIASING)}", f"v{PREPROCESSING_VERSION}"]
    )  # fmt: skip
    cache_file = ctx.cache_dir / "traffic_signs_preprocessed" / f"{key}.npz"
    if ctx.should_stop():
        return None
    if cache_file.exists():
        with np.load(cache_file) as cached:
            images, labels, layout = cached["images"], cached["labels"], str(cached["layout"])
        ctx.log(f"read {len(labels)} preprocessed images from the worker's cache")
        return images, labels, layout
    loaded = _load_images(ctx, dataset.path, params)
    if loaded is not None:
        images, labels, layout = loaded
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        partial = cache_file.with_name(f"{cache_file.stem}.{os.getpid()}.partial.npz")
        np.savez(partial, images=images, labels=labels, layout=np.array(layout))
        partial.replace(cache_file)  # atomic: a concurrent run never reads half a file
    return loaded


def _load_images(ctx: RunContext, folder: Path, params: TrafficSignsParams):
    """(images, class ids, layout) of the dataset, preprocessed; None if cancelled meanwhile."""
    from worker.pipelines.traffic_signs import data

    listing = data.list_gtsrb(folder)
    total = len(listing.samples)
    ctx.log(f"reading {total} images ({listing.layout} layout in {listing.images_dir}), color_mode={params.color_mode}")
    chunks = []
    for start in range(0, total, LOAD_CHUNK):
        if ctx.should_stop():
            return None
        chunk = listing.samples[start : start + LOAD_CHUNK]
        chunks.append(data.load_samples(chunk, color_mode=params.color_mode, roi_crop=params.roi_crop))
        ctx.progress(0, params.epochs, f"preprocessing images {start + len(chunk)}/{total}")
    labels = np.array([sample.class_id for sample in listing.samples], dtype=np.int64)
    ctx.log(f"read {total} images of {len(np.unique(labels))} classes")
    return np.concatenate(chunks), labels, listing.layout


def _batches(
    images: np.ndarray, labels: np.ndarray, params: TrafficSignsParams, *, shuffle: bool, replicas: int = 1
):
    """A tf.data pipeline of (images, one-hot labels); the book's minibatcher reshuffles each epoch."""
    import tensorflow as tf

    batch_size = params.batch_size
    if replicas > 1:
        # Keras (3.15) builds a distributed model from the replicas' mean of the first batch, which
        # fails unless that batch splits evenly: make it a multiple of the replica count.
        batch_size = max(min(batch_size, len(images)) // replicas * replicas, replicas)
    one_hot = np.eye(N_CLASSES, dtype=np.float32)[labels]
    dataset = tf.data.Dataset.from_tensor_slices((images, one_hot))
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=params.seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _save_model(model, model_dir: Path, params: TrafficSignsParams, class_ids: list[int]) -> Path:
    """The model without its optimizer state (a third of the size) and the preprocessing to reproduce."""
    from worker.pipelines.traffic_signs import data
    from worker.pipelines.traffic_signs.model import build_model

    model_dir.mkdir(parents=True, exist_ok=True)
    # A fresh, uncompiled copy: keras.models.clone_model keeps the compiled optimizer's variables.
    serving = build_model()
    serving.set_weights(model.get_weights())
    serving.save(model_dir / MODEL_FILE)
    preprocessing = {
        "color_mode": params.color_mode,
        "image_size": list(data.IMAGE_SIZE),
        "anti_aliasing": data.ANTI_ALIASING,
        "input_range": [0.0, 100.0],
        "roi_crop_in_training": params.roi_crop,
        "class_ids": class_ids,
        "labels": {str(class_id): GTSRB_LABELS[class_id] for class_id in class_ids},
    }
    (model_dir / PREPROCESSING_FILE).write_text(json.dumps(preprocessing, indent=2) + "\n")
    return model_dir


def _evaluate(ctx: RunContext, model, images, labels, class_ids: list[int], params) -> dict[str, float]:
    """The book's evaluation on the held-out split: loss, accuracy, report, confusion matrices."""
    from sklearn.metrics import classification_report, confusion_matrix

    probabilities = model.predict(images, batch_size=params.batch_size, verbose=0)
    # Cross-entropy as Keras computes it (probabilities clipped at 1e-7), without dropout.
    test_loss = float(np.mean(-np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0))))
    # Predictions are among the classes the model was trained on, as the predictor answers.
    predicted = np.array(class_ids)[probabilities[:, class_ids].argmax(axis=1)]
    metrics = {"test_accuracy": float(np.mean(predicted == labels)), "test_loss": test_loss}
    ctx.log_metrics(step=params.epochs, **metrics)
    ctx.log(f"test_accuracy={metrics['test_accuracy']:.4f}, test_loss={test_loss:.4f}")

    names = [GTSRB_LABELS[class_id] for class_id in class_ids]
    report = classification_report(
        labels, predicted, labels=class_ids, target_names=names, output_dict=True, zero_division=0
    )
    report_path = ctx.artifacts_dir / "classification_report.json"
    report_path.write_text(json.dumps(report, indent=2, default=float) + "\n")
    ctx.log_artifact(report_path, kind="report", metadata={"title": "Classification report (held-out split)"})

    matrix = confusion_matrix(labels, predicted, labels=class_ids)
    matrix_path = ctx.artifacts_dir / "confusion_matrix.json"
    matrix_path.write_text(json.dumps({"class_ids": class_ids, "matrix": matrix.tolist()}) + "\n")
    ctx.log_artifact(matrix_path, kind="report", metadata={"title": "Confusion matrix (rows: true class)"})
    plots = (
        ("confusion_matrix.png", matrix, "Blues", "Confusion matrix"),
        # The book's second plot, log2(cm + 1) in tab20, "to emphasize the misclassifications".
        ("confusion_matrix_log2.png", np.log2(matrix + 1), "tab20", "Confusion matrix, log2(count + 1)"),
    )
    for filename, values, colormap, title in plots:
        path = ctx.artifacts_dir / filename
        _plot_matrix(values, class_ids, path, colormap=colormap, title=title)
        ctx.log_artifact(path, kind="plot", metadata={"title": title})
    return metrics


def _plot_matrix(values: np.ndarray, class_ids: list[int], path: Path, *, colormap: str, title: str) -> None:
    # A bare Figure renders with Agg and touches no pyplot global state (safe in a worker).
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 7), dpi=100)
    axes = figure.add_subplot()
    image = axes.imshow(values, interpolation="nearest", cmap=colormap)
    figure.colorbar(image, ax=axes)
    ticks = range(len(class_ids))
    axes.set_xticks(ticks, [str(class_id) for class_id in class_ids], fontsize=6, rotation=90)
    axes.set_yticks(ticks, [str(class_id) for class_id in class_ids], fontsize=6)
    axes.set(xlabel="predicted class", ylabel="true class", title=title)
    figure.tight_layout()
    figure.savefig(path)


# Prediction ------------------------------------------------------------------------------------


class TrafficSignsPredictor:
    """Classifies image files with a model folder written by `train`; load once, call many times."""

    def __init__(self, model_dir: Path):
        import keras
        import tensorflow as tf

        config = json.loads((model_dir / PREPROCESSING_FILE).read_text())
        self.color_mode = config["color_mode"]
        self.class_ids = np.array(config["class_ids"], dtype=np.int64)
        self.labels = {int(class_id): label for class_id, label in config["labels"].items()}
        model = keras.models.load_model(model_dir / MODEL_FILE, compile=False)
        height, width = config["image_size"]
        # model.predict() spends ~70 ms per call setting up; the traced graph takes ~1.3 ms for one
        # image and ~0.3 ms per image in batches of 8 or more (one CPU thread). Calling the concrete
        # function skips tf.function's argument binding (~0.2 ms a call); any batch size, one trace
        # (padding batches to a few fixed sizes measured no faster).
        self._forward = tf.function(lambda images: model(images, training=False)).get_concrete_function(
            tf.TensorSpec([None, height, width, 1], tf.float32)
        )
        self._forward(tf.zeros((1, height, width, 1)))  # the first run sets kernels up: now, not on a request

    def predict(self, inputs: PredictInput) -> dict[str, Any]:
        """{"predictions": top 5 of {class_id, label, probability}, most probable first}."""
        return self.predict_batch([inputs])[0]

    def predict_batch(self, batch: list[PredictInput]) -> list[dict[str, Any]]:
        """Several inputs in one forward pass."""
        from worker.pipelines.traffic_signs import data

        images = []
        for inputs in batch:
            file = inputs.files.get("file")
            if file is None:
                raise ValueError("file: required")
            source = Path(file) if isinstance(file, (str, Path)) else bytes(file)
            images.append(data.preprocess(data.read_image(source), color_mode=self.color_mode))
        probabilities = self._forward(np.stack(images)[:, :, :, np.newaxis]).numpy()
        return [self._top(row) for row in probabilities]

    def _top(self, probabilities: np.ndarray) -> dict[str, Any]:
        # Only classes seen in training are answered: the others' outputs were never taught.
        known = probabilities[self.class_ids]
        order = np.argsort(-known, kind="stable")[:TOP_K]
        predictions = [
            {
                "class_id": int(self.class_ids[index]),
                "label": self.labels[int(self.class_ids[index])],
                "probability": float(known[index]),
            }
            for index in order
        ]
        return {"predictions": predictions}


pipeline = TrafficSignsPipeline()
