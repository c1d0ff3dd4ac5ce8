"""The traffic_signs pipeline: params, training, cancellation, resume, prediction."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from worker.pipelines.base import DatasetRef, ParamsError, PredictInput, get_pipeline
from worker.pipelines.traffic_signs.labels import GTSRB_LABELS
from worker.runtime.local import LocalRunContext



@pytest.fixture
def pipeline():
    return get_pipeline("traffic_signs")


# Params ------------------------------------------------------------------------------------------


def test_defaults_are_the_books(pipeline):
    assert pipeline.resolve_params(None).model_dump() == {
        "epochs": 10,
        "batch_size": 256,
        "learning_rate": 0.001,
        "seed": 101,
        "test_size": 0.25,
        "color_mode": "lab_l",
        "roi_crop": False,
        "images_per_class": 150,
    }
    assert pipeline.default_dataset == "synthetic_signs"
    assert pipeline.builtin_dataset("synthetic_signs").kind == "gtsrb"
    assert pipeline.predict_mode == "sync"


@pytest.mark.parametrize(
    ("raw", "errors"),
    [
        ({"max_epochs": 10}, {"max_epochs": ["Unknown parameter."]}),
        ({"epochs": -1}, {"epochs": ["Input should be greater than 0"]}),
        ({"learning_rate": 0}, {"learning_rate": ["Input should be greater than 0"]}),
        ({"test_size": 1.0}, {"test_size": ["Input should be less than 1"]}),
        ({"color_mode": "rgb"}, {"color_mode": ["Input should be 'lab_l' or 'yuv_y'"]}),
    ],
)
def test_invalid_params_are_rejected_by_field(pipeline, raw, errors):
    with pytest.raises(ParamsError) as error:
        pipeline.resolve_params(raw)
    assert error.value.errors == errors


def test_the_builtin_dataset_follows_the_params(pipeline, tmp_path):
    params = pipeline.resolve_params({"seed": 3, "images_per_class": 1})

    folder, digest = pipeline.builtin_dataset("synthetic_signs").build(tmp_path, params)

    assert folder.name == "synthetic_signs-v1-seed3-n1"
    assert len(digest) == 64
    assert len(list(folder.rglob("*.ppm"))) == 43


@pytest.mark.tf
def test_the_model_is_the_books():
    from worker.pipelines.traffic_signs.model import build_model

    model = build_model()

    assert model.count_params() == 4_291_499
    assert model.output_shape == (None, 43)
    assert [layer.negative_slope for layer in model.layers if hasattr(layer, "negative_slope")] == [0.2] * 3
    assert [layer.rate for layer in model.layers if hasattr(layer, "rate")] == [0.2, 0.2, 0.4]


@pytest.mark.tf
def test_a_seeded_model_does_not_depend_on_pythons_global_random_generator():
    # A worker's reporting thread draws from `random` while a run builds its model.
    import random

    import keras

    from worker.pipelines.traffic_signs.model import build_model

    keras.utils.set_random_seed(101)
    first = build_model(seed=101)
    keras.utils.set_random_seed(101)
    random.random()
    second = build_model(seed=101)

    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights(), strict=True))
    assert [layer.seed for layer in second.layers if hasattr(layer, "rate")] == [102, 104, 106]


# Training ----------------------------------------------------------------------------------------


def test_preprocessed_images_are_cached_by_dataset_and_preprocessing(pipeline, synthetic_tiny, tmp_path):
    from worker.pipelines.traffic_signs.pipeline import _load_images_cached

    folder, sha256 = synthetic_tiny
    dataset = DatasetRef(folder, "gtsrb", "synthetic_signs", sha256)

    def load(**params):
        ctx = LocalRunContext(seed=101, work_dir=tmp_path / "run", cache_dir=tmp_path / "cache", show_progress=False)
        return _load_images_cached(ctx, dataset, pipeline.resolve_params(params)), ctx.log_lines

    (images, labels, layout), first_log = load()
    (cached_images, cached_labels, cached_layout), second_log = load(epochs=3)
    _, yuv_log = load(color_mode="yuv_y")

    assert "[info] read 172 preprocessed images from the worker's cache" not in first_log
    assert "[info] read 172 preprocessed images from the worker's cache" in second_log
    assert "[info] read 172 preprocessed images from the worker's cache" not in yuv_log
    assert np.array_equal(images, cached_images) and np.array_equal(labels, cached_labels)
    assert (images.shape, images.dtype, layout, cached_layout) == ((172, 32, 32, 1), np.float32, "training", "training")


@pytest.mark.tf
def test_training_reports_the_books_metrics(trained):
    ctx, result = trained

    assert set(ctx.metrics) == {"loss", "accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy"}
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert list(ctx.metrics[key]) == [1]
    assert set(result.metrics) == {"test_accuracy", "test_loss"}
    assert ctx.metrics["test_accuracy"] == {1: result.metrics["test_accuracy"]}
    assert 0.0 <= result.metrics["test_accuracy"] <= 1.0
    assert result.summary["images"] == 172
    assert (result.summary["train_images"], result.summary["test_images"]) == (129, 43)
    assert result.summary["epochs_completed"] == 1
    assert result.summary["parameters"] == 4_291_499


@pytest.mark.tf
def test_training_writes_artifacts_model_and_checkpoint(trained):
    ctx, result = trained

    published = {path.name: kind for path, kind, _ in ctx.artifacts}
    assert published == {
        "classification_report.json": "report",
        "confusion_matrix.json": "report",
        "confusion_matrix.png": "plot",
        "confusion_matrix_log2.png": "plot",
    }
    for name in published:
        assert (ctx.artifacts_dir / name).stat().st_size > 0
    report = json.loads((ctx.artifacts_dir / "classification_report.json").read_text())
    assert set(GTSRB_LABELS) <= set(report)  # one row per class, named
    assert report["weighted avg"]["support"] == 43  # the held-out images
    assert result.model_dir == ctx.artifacts_dir / "model"
    assert sorted(path.name for path in result.model_dir.iterdir()) == ["model.keras", "preprocessing.json"]
    preprocessing = json.loads((result.model_dir / "preprocessing.json").read_text())
    assert preprocessing["color_mode"] == "lab_l"
    assert preprocessing["class_ids"] == list(range(43))
    assert preprocessing["labels"]["14"] == "Stop"
    assert ctx.checkpoints == [1]
    assert ctx.checkpoint_state() == {"step": 1, "epoch": 1}


class _CancelWhenTrainingStarts(LocalRunContext):
    """Cancelled the moment the images are read and fitting begins."""

    batches = 0

    def log(self, message, level="info"):
        super().log(message, level)
        if message.startswith("training on"):
            self.cancel()

    def progress(self, done, total, message=""):
        if message.startswith("epoch") and done != int(done):
            self.batches += 1


@pytest.mark.tf
def test_cancel_before_fitting_stops_after_the_first_batch(pipeline, synthetic_tiny, tmp_path):
    params = pipeline.resolve_params({"epochs": 3, "batch_size": 8, "images_per_class": 4})
    folder, sha256 = synthetic_tiny
    ctx = _CancelWhenTrainingStarts(seed=101, work_dir=tmp_path, show_progress=False)

    result = pipeline.train(ctx, DatasetRef(folder, "gtsrb", "synthetic_signs", sha256), params)

    assert ctx.batches == 1  # of 17 per epoch
    assert ctx.checkpoints == []
    assert result.metrics == {}
    assert result.summary["stopped"] is True
    assert (result.model_dir / "model.keras").exists()  # what was trained so far is kept


def test_cancel_before_training_stops_before_reading_images(pipeline, synthetic_tiny, tmp_path):
    folder, sha256 = synthetic_tiny
    ctx = LocalRunContext(seed=101, work_dir=tmp_path, show_progress=False)
    ctx.cancel()

    result = pipeline.train(ctx, DatasetRef(folder, "gtsrb", "synthetic_signs", sha256), pipeline.resolve_params({}))

    assert result.metrics == {}
    assert result.model_dir is None
    assert result.summary == {"stopped": True, "epochs_completed": 0}
    assert ctx.metrics == {}


@pytest.mark.tf
def test_a_second_attempt_resumes_from_the_checkpoint(pipeline, trained, synthetic_tiny, tmp_path):
    first_ctx, _ = trained
    shutil.copytree(first_ctx.checkpoint_dir, tmp_path / "checkpoint")
    ctx = LocalRunContext(seed=101, work_dir=tmp_path, show_progress=False)
    folder, sha256 = synthetic_tiny
    params = pipeline.resolve_params({"epochs": 2, "images_per_class": 4})

    result = pipeline.train(ctx, DatasetRef(folder, "gtsrb", "synthetic_signs", sha256), params)

    assert "[info] resuming from the checkpoint after epoch 1" in ctx.log_lines
    assert list(ctx.metrics["loss"]) == [2]
    assert ctx.checkpoints == [2]
    assert result.summary["epochs_completed"] == 2


# Prediction --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def predictor(trained):
    _, result = trained
    return get_pipeline("traffic_signs").load(result.model_dir)


@pytest.mark.tf
def test_predicts_the_top_5_classes(predictor, gtsrb_tiny):
    image = (gtsrb_tiny / "00014" / "00000_00000.ppm").read_bytes()

    output = predictor.predict(PredictInput(files={"file": image}))

    predictions = output["predictions"]
    assert len(predictions) == 5
    assert set(predictions[0]) == {"class_id", "label", "probability"}
    probabilities = [prediction["probability"] for prediction in predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    assert 0.0 < sum(probabilities) <= 1.0 + 1e-6
    assert all(isinstance(prediction["class_id"], int) for prediction in predictions)
    top = predictions[0]
    assert top["label"] == GTSRB_LABELS[top["class_id"]]


@pytest.mark.tf
def test_predicts_a_jpeg_photo_and_a_batch(predictor, gtsrb_tiny):
    buffer = io.BytesIO()
    Image.open(gtsrb_tiny / "00000" / "00000_00000.ppm").resize((640, 480)).save(buffer, format="JPEG")
    ppm = (gtsrb_tiny / "00000" / "00000_00000.ppm").read_bytes()

    single = predictor.predict(PredictInput(files={"file": ppm}))
    jpeg = buffer.getvalue()
    batch = predictor.predict_batch([PredictInput(files={"file": ppm}), PredictInput(files={"file": jpeg})])

    assert len(batch) == 2
    assert [p["class_id"] for p in batch[0]["predictions"]] == [p["class_id"] for p in single["predictions"]]
    batch_probabilities = [p["probability"] for p in batch[0]["predictions"]]
    np.testing.assert_allclose(batch_probabilities, [p["probability"] for p in single["predictions"]], rtol=1e-4)
    assert len(batch[1]["predictions"]) == 5


@pytest.mark.tf
@pytest.mark.parametrize(
    ("files", "message"),
    [({"file": b"%PDF-1.4 not an image"}, "file: not an image Pillow can read"), ({}, "file: required")],
)
def test_prediction_rejects_bad_input(predictor, files, message):
    with pytest.raises(ValueError) as error:
        predictor.predict(PredictInput(files=files))
    assert str(error.value) == message
