"""One real Celery worker process (session-scoped) running real traffic-sign runs against the test
database and the real Redis: train, register, predict, share, cancel, duplicate delivery, uploads."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from PIL import Image, ImageDraw

from apps.experiments.models import Run, RunStatus
from dlsite.celery import app
from tests.conftest import FIXTURES, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.tf, pytest.mark.django_db(transaction=True)]

TINY = {"epochs": 1, "images_per_class": 5, "batch_size": 64}


def wait_for_status(run_id: int, statuses: set[str], timeout: float) -> Run:
    def finished():
        run = Run.objects.get(pk=run_id)
        return run if run.status in statuses else None

    return wait_for(finished, timeout=timeout, interval=0.2, message=f"run {run_id} to reach {statuses}")


def sign_png() -> bytes:
    image = Image.new("RGB", (48, 48), (200, 200, 190))
    draw = ImageDraw.Draw(image)
    draw.ellipse((4, 4, 44, 44), fill=(200, 20, 20))
    draw.ellipse((10, 10, 38, 38), fill=(250, 250, 250))
    draw.text((16, 18), "30", fill=(0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def upload(content: bytes, name: str):
    file = io.BytesIO(content)
    file.name = name
    return file


def test_tiny_run_trains_registers_predicts_and_shares(celery_worker, api, other_api, other_user, settings):
    response = api.post("/api/v1/runs/", {"pipeline": "traffic_signs", "params": TINY}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "queued"
    run_id = response.json()["id"]

    run = wait_for_status(run_id, {RunStatus.SUCCEEDED, RunStatus.FAILED}, timeout=300)
    assert run.status == RunStatus.SUCCEEDED, run.error + run.traceback
    assert [c.to_status for c in run.status_changes.all()] == ["queued", "running", "succeeded"]
    assert run.attempt == 1 and run.progress == 1.0
    assert run.dataset_hash and run.code_version and "tensorflow-cpu" in run.package_versions

    detail = api.get(f"/api/v1/runs/{run_id}/").json()
    assert detail["model_version"]["version"] == 1
    assert detail["model_version"]["name"] == "traffic_signs"

    metrics = api.get(f"/api/v1/runs/{run_id}/metrics/").json()
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert [point["step"] for point in metrics[key]] == [1]
    assert 0.0 <= metrics["test_accuracy"][0]["value"] <= 1.0

    artifacts = {a["name"]: a for a in api.get(f"/api/v1/runs/{run_id}/artifacts/").json()}
    assert {"confusion_matrix.png", "confusion_matrix_log2.png", "classification_report.json", "model.zip"} <= set(artifacts)
    report = api.get(artifacts["classification_report.json"]["download_url"])
    assert report.status_code == 200
    assert "weighted avg" in json.loads(b"".join(report.streaming_content))
    assert other_api.get(artifacts["model.zip"]["download_url"]).status_code == 404

    logs = api.get(f"/api/v1/runs/{run_id}/logs/").json()
    assert any("epoch 1/1" in line["message"] for line in logs)

    model_id = detail["model_version"]["id"]
    predicted = api.post(f"/api/v1/models/{model_id}/predict/", {"file": upload(sign_png(), "sign.png")}, format="multipart")
    assert predicted.status_code == 200, predicted.content
    predictions = predicted.json()["predictions"]
    assert len(predictions) == 5
    assert [p["probability"] for p in predictions] == sorted((p["probability"] for p in predictions), reverse=True)
    assert set(predictions[0]) == {"class_id", "label", "probability"}

    not_an_image = api.post(f"/api/v1/models/{model_id}/predict/", {"file": upload(b"plain text", "a.txt")}, format="multipart")
    assert not_an_image.status_code == 400
    assert set(not_an_image.json()) == {"message", "errors"}

    # Private until shared: bob cannot see it, then can use it, but never sees the run behind it.
    assert other_api.post(f"/api/v1/models/{model_id}/predict/", {"file": upload(sign_png(), "s.png")}, format="multipart").status_code == 404
    shared = api.patch(f"/api/v1/models/{model_id}/", {"visibility": "shared", "shared_with": ["bob"], "aliases": ["production"]}, format="json")
    assert shared.status_code == 200, shared.json()
    assert shared.json()["aliases"] == ["production"]
    by_alias = other_api.post("/api/v1/models/traffic_signs@production/predict/", {"file": upload(sign_png(), "s.png")}, format="multipart")
    assert by_alias.status_code == 200
    assert by_alias.json() == predicted.json()  # same model, same image, same answer
    assert other_api.get(f"/api/v1/runs/{run_id}/").status_code == 404

    # A duplicate delivery of the finished run's message claims nothing and changes nothing.
    app.send_task("worker.tasks.run_train", args=[run_id, 1])
    wait_for(
        lambda: f"run {run_id} attempt 1 is not claimable" in celery_worker.log_path.read_text(),
        timeout=60, message="the duplicate message to be handled",
    )
    assert Run.objects.get(pk=run_id).status_changes.count() == 3

    # While the session's only worker is busy training, a prediction cannot be answered in time: a 504
    # in the error shape, not a hung request.
    busy = api.post("/api/v1/runs/", {"pipeline": "traffic_signs", "params": {**TINY, "epochs": 200}}, format="json")
    wait_for(lambda: Run.objects.get(pk=busy.json()["id"]).current_step >= 1, timeout=120, message="the busy run")
    settings.PREDICT_TIMEOUT = 1
    too_slow = api.post(f"/api/v1/models/{model_id}/predict/", {"file": upload(sign_png(), "s.png")}, format="multipart")
    assert too_slow.status_code == 504
    assert too_slow.json()["message"] == "No prediction within 1 s; try again later."
    assert api.post(f"/api/v1/runs/{busy.json()['id']}/cancel/").status_code == 202
    assert wait_for_status(busy.json()["id"], {RunStatus.CANCELLED}, timeout=30).status == RunStatus.CANCELLED

    # A run that continues this one starts from its weights and becomes version 2 of the model.
    child = api.post("/api/v1/runs/", {"pipeline": "traffic_signs", "params": TINY, "parent": run_id}, format="json")
    assert child.status_code == 201, child.json()
    child_run = wait_for_status(child.json()["id"], {RunStatus.SUCCEEDED, RunStatus.FAILED}, timeout=240)
    assert child_run.status == RunStatus.SUCCEEDED, child_run.error
    assert child_run.log_lines.filter(message="starting from the parent run's weights").exists()
    assert api.get(f"/api/v1/runs/{child_run.pk}/").json()["model_version"]["version"] == 2


def test_cancel_stops_a_running_run_within_seconds_and_keeps_its_artifacts(celery_worker, api):
    params = {"epochs": 200, "images_per_class": 5, "batch_size": 16}
    run_id = api.post("/api/v1/runs/", {"pipeline": "traffic_signs", "params": params}, format="json").json()["id"]
    wait_for(lambda: Run.objects.get(pk=run_id).current_step >= 1, timeout=180, message="the first epoch")

    response = api.post(f"/api/v1/runs/{run_id}/cancel/")
    assert response.status_code == 202
    run = wait_for_status(run_id, {RunStatus.CANCELLED, RunStatus.FAILED, RunStatus.SUCCEEDED}, timeout=20)
    assert run.status == RunStatus.CANCELLED
    assert run.current_step < 200
    assert run.artifacts.filter(kind="checkpoint").exists()  # what was written so far stays
    assert not hasattr(run, "model_version") or run.model_version is None


def zip_of(folder) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder.parent))
    return buffer.getvalue()


def test_uploaded_dataset_is_validated_on_the_default_queue(celery_worker, api):
    good = api.post(
        "/api/v1/datasets/",
        {"name": "tiny", "kind": "gtsrb", "file": upload(zip_of(FIXTURES / "gtsrb_tiny"), "tiny.zip")},
        format="multipart",
    )
    assert good.status_code == 201, good.json()
    assert good.json()["status"] == "validating"

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../escape.ppm", b"P6 1 1 255 abc")
    evil = api.post("/api/v1/datasets/", {"name": "evil", "kind": "gtsrb", "file": upload(buffer.getvalue(), "evil.zip")}, format="multipart")
    assert evil.status_code == 201

    def validated(dataset_id):
        body = api.get(f"/api/v1/datasets/{dataset_id}/").json()
        return body if body["status"] != "validating" else None

    good_body = wait_for(lambda: validated(good.json()["id"]), timeout=60, message="validation")
    assert good_body["status"] == "ready", good_body["error"]
    evil_body = wait_for(lambda: validated(evil.json()["id"]), timeout=60, message="validation")
    assert evil_body["status"] == "invalid"
    assert "../escape.ppm: path leaves the archive's folder" in evil_body["error"]

    run = api.post("/api/v1/runs/", {"pipeline": "traffic_signs", "params": TINY, "dataset": good_body["id"]}, format="json")
    assert run.status_code == 201
    finished = wait_for_status(run.json()["id"], {RunStatus.SUCCEEDED, RunStatus.FAILED}, timeout=240)
    assert finished.status == RunStatus.SUCCEEDED, finished.error
    assert finished.dataset_hash == good_body["sha256"]
