"""The REST contract: shapes, status codes and who may see what (404, not 403, for others' objects)."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from apps.datasets.models import Dataset
from apps.datasets.services import builtin_datasets_ensure
from apps.experiments.models import Artifact, LogLine, Metric, Run, RunStatus, WorkerHeartbeat
from apps.registry.models import ModelAlias, ModelVersion
from tests.apps.factories import make_artifact, make_model_version, make_run

pytestmark = pytest.mark.django_db


def assert_error_shape(response, status_code: int, *fields: str) -> dict:
    """A 4xx body is exactly {"message": str, "errors": {field: [str, ...]}}; returns it."""
    assert response.status_code == status_code, response.content
    body = response.json()
    assert set(body) == {"message", "errors"}
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["errors"], dict)
    for messages in body["errors"].values():
        assert isinstance(messages, list) and messages
        assert all(isinstance(message, str) for message in messages)
    assert sorted(body["errors"]) == sorted(fields)
    return body


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


# Health and tokens --------------------------------------------------------------------------------------


def test_health_needs_no_auth():
    WorkerHeartbeat.objects.create(
        hostname="alive@host", queues=["training"], pid=1, started_at=timezone.now(), last_seen=timezone.now()
    )
    WorkerHeartbeat.objects.create(
        hostname="gone@host", queues=["default"], pid=2, started_at=timezone.now() - timedelta(hours=2),
        last_seen=timezone.now() - timedelta(hours=1),
    )
    response = APIClient().get("/api/v1/health/")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"database", "redis", "workers", "queues"}
    assert list(body["queues"]) == list(settings.QUEUES)
    assert all(isinstance(waiting, int) for waiting in body["queues"].values())
    assert body["database"]["ok"] is True
    assert body["redis"] == {"ok": True}
    assert [(worker["hostname"], worker["queues"]) for worker in body["workers"]] == [("alive@host", ["training"])]


def test_token_for_good_credentials(user):
    client = APIClient()
    response = client.post("/api/v1/auth/token/", {"username": "alice", "password": "alice-password"}, format="json")
    assert response.status_code == 200
    token = response.json()["token"]
    assert set(response.json()) == {"token"}
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/runs/").status_code == 200


def test_token_for_bad_credentials(user):
    response = APIClient().post("/api/v1/auth/token/", {"username": "alice", "password": "wrong"}, format="json")
    body = assert_error_shape(response, 400, "non_field_errors")
    assert body["message"] == "Invalid input."


def test_token_without_fields(user):
    response = APIClient().post("/api/v1/auth/token/", {}, format="json")
    assert_error_shape(response, 400, "username", "password")


@pytest.mark.parametrize(
    "method, path",
    [("get", "/api/v1/runs/"), ("post", "/api/v1/runs/"), ("get", "/api/v1/pipelines/"), ("get", "/api/v1/models/"),
     ("get", "/api/v1/datasets/"), ("get", "/api/v1/runs/1/")],
)
def test_unauthenticated_is_401_in_the_shape(method, path):
    response = getattr(APIClient(), method)(path)
    body = assert_error_shape(response, 401)
    assert body["message"] == "Authentication credentials were not provided."


def test_bad_token_is_401_in_the_shape():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    body = assert_error_shape(client.get("/api/v1/runs/"), 401)
    assert body["message"] == "Invalid token."


# Pipelines ------------------------------------------------------------------------------------------------


def test_pipelines_list_traffic_signs(api):
    response = api.get("/api/v1/pipelines/")
    assert response.status_code == 200
    pipelines = {pipeline["name"]: pipeline for pipeline in response.json()}
    assert "traffic_signs" in pipelines
    traffic_signs = pipelines["traffic_signs"]
    assert {"name", "title", "params_schema", "dataset_kinds", "default_dataset"} <= set(traffic_signs)
    assert traffic_signs["title"] == "Traffic sign recognition"
    assert traffic_signs["default_dataset"] == "builtin:synthetic_signs"
    assert "builtin:synthetic_signs" in traffic_signs["builtin_datasets"]
    assert [kind["name"] for kind in traffic_signs["dataset_kinds"]] == ["gtsrb"]
    schema = traffic_signs["params_schema"]
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    properties = schema["properties"]
    assert properties["epochs"]["default"] == 10
    assert properties["learning_rate"]["default"] == 0.001
    assert properties["batch_size"]["default"] == 256
    assert properties["seed"]["default"] == 101
    assert properties["epochs"]["type"] == "integer"
    # The book's own name is in each canonical field's description.
    assert "max_epochs" in properties["epochs"]["description"]


# Submitting runs ------------------------------------------------------------------------------------------


def test_submit_run(api, user, sent_tasks, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/v1/runs/", {"pipeline": "traffic_signs", "params": {"epochs": 1}, "experiment": "first"}, format="json"
        )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "queued"
    assert body["pipeline"] == "traffic_signs"
    assert body["experiment"] == "first"
    assert body["dataset"] == "builtin:synthetic_signs"
    assert body["attempt"] == 1
    assert body["progress"] == 0.0
    assert body["params"]["epochs"] == 1
    assert body["params"]["batch_size"] == 256
    assert body["seed"] == 101
    assert body["model_version"] is None
    assert body["metrics"] == {}
    run = Run.objects.get(pk=body["id"])
    assert run.owner == user
    assert sent_tasks == [("worker.tasks.run_train", [run.pk, 1], {"queue": "training"})]


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"pipeline": "no_such_pipeline"}, "pipeline"),
        ({}, "pipeline"),
        ({"pipeline": "traffic_signs", "params": {"nope": 1}}, "params.nope"),
        ({"pipeline": "traffic_signs", "params": {"epochs": "ten"}}, "params.epochs"),
        ({"pipeline": "traffic_signs", "params": {"learning_rate": [0.1]}}, "params.learning_rate"),
        ({"pipeline": "traffic_signs", "params": "epochs=1"}, "params"),
        ({"pipeline": "traffic_signs", "dataset": 424242}, "dataset"),
        ({"pipeline": "traffic_signs", "dataset": "builtin:nope"}, "dataset"),
        ({"pipeline": "traffic_signs", "queue": "nope"}, "queue"),
        ({"pipeline": "traffic_signs", "parent": 424242}, "parent"),
    ],
)
def test_submit_run_refused(api, payload, field, sent_tasks):
    response = api.post("/api/v1/runs/", payload, format="json")
    assert_error_shape(response, 400, field)
    assert not Run.objects.exists()
    assert sent_tasks == []


def test_submit_unknown_param_message(api):
    response = api.post("/api/v1/runs/", {"pipeline": "traffic_signs", "params": {"nope": 1}}, format="json")
    assert response.json() == {"message": "Invalid parameters.", "errors": {"params.nope": ["Unknown parameter."]}}


def test_submit_into_an_experiment_of_another_pipeline(api, user):
    make_run(user, experiment="mixed", pipeline="other_pipeline")
    response = api.post("/api/v1/runs/", {"pipeline": "traffic_signs", "experiment": "mixed"}, format="json")
    assert assert_error_shape(response, 400, "experiment")["errors"] == {
        "experiment": ["Experiment 'mixed' holds other_pipeline runs."]
    }
    assert Run.objects.count() == 1


def test_submit_on_another_users_dataset(api, other_user):
    theirs = Dataset.objects.create(owner=other_user, name="theirs", kind="gtsrb", status=Dataset.Status.READY)
    response = api.post("/api/v1/runs/", {"pipeline": "traffic_signs", "dataset": theirs.pk}, format="json")
    assert_error_shape(response, 400, "dataset")


# Listing runs ---------------------------------------------------------------------------------------------


def list_ids(api, query: str = "") -> list[int]:
    response = api.get(f"/api/v1/runs/{query}")
    assert response.status_code == 200, response.content
    return [run["id"] for run in response.json()["results"]]


def test_list_runs_filters_and_orders(api, user, other_user):
    low = make_run(user, experiment="a", status=RunStatus.SUCCEEDED, latest_metrics={"val_accuracy": 0.5})
    high = make_run(user, experiment="a", status=RunStatus.SUCCEEDED, latest_metrics={"val_accuracy": 0.9})
    none = make_run(user, experiment="b", status=RunStatus.QUEUED)
    middle = make_run(user, experiment="b", status=RunStatus.FAILED, latest_metrics={"val_accuracy": 0.7, "loss": 1})
    other_pipeline = make_run(user, experiment="c", pipeline="other_pipeline", status=RunStatus.RUNNING)
    make_run(other_user, experiment="a", status=RunStatus.SUCCEEDED, latest_metrics={"val_accuracy": 1.0})

    body = api.get("/api/v1/runs/").json()
    assert (body["next"], body["previous"]) == (None, None)
    assert [run["id"] for run in body["results"]] == [other_pipeline.pk, middle.pk, none.pk, high.pk, low.pk]
    assert list_ids(api, "?order_by=created") == [low.pk, high.pk, none.pk, middle.pk, other_pipeline.pk]
    assert list_ids(api, "?pipeline=traffic_signs") == [middle.pk, none.pk, high.pk, low.pk]
    assert list_ids(api, "?status=succeeded") == [high.pk, low.pk]
    assert list_ids(api, "?experiment=b") == [middle.pk, none.pk]
    assert list_ids(api, "?experiment=a&status=succeeded&order_by=created") == [low.pk, high.pk]
    # By a metric's latest value, runs without it last either way.
    assert list_ids(api, "?order_by=-metric:val_accuracy&pipeline=traffic_signs") == [high.pk, middle.pk, low.pk, none.pk]
    assert list_ids(api, "?order_by=metric:val_accuracy&pipeline=traffic_signs") == [low.pk, middle.pk, high.pk, none.pk]
    assert list_ids(api, "?limit=2&offset=1") == [middle.pk, none.pk]

    run = next(run for run in body["results"] if run["id"] == middle.pk)
    assert run["metrics"] == {"val_accuracy": 0.7, "loss": 1}
    assert run["status"] == "failed"
    assert run["experiment"] == "b"


@pytest.mark.parametrize("query, field", [("?status=done", "status"), ("?order_by=name", "order_by"), ("?order_by=metric:", "order_by")])
def test_list_runs_bad_filters(api, query, field):
    assert_error_shape(api.get(f"/api/v1/runs/{query}"), 400, field)


# One run, its metrics, logs and artifacts -------------------------------------------------------------------


def test_run_detail_metrics_logs_artifacts(api, user):
    run = make_run(user, status=RunStatus.RUNNING, latest_metrics={"loss": 0.5})
    time = timezone.now()
    Metric.objects.create(run=run, key="loss", step=2, value=0.5, time=time)
    Metric.objects.create(run=run, key="loss", step=1, value=0.9, time=time)
    Metric.objects.create(run=run, key="accuracy", step=1, value=0.25, time=time)
    first = LogLine.objects.create(run=run, attempt=1, time=time, message="starting")
    LogLine.objects.create(run=run, attempt=1, time=time, level="warning", message="slow")
    report = make_artifact(run, name="classification_report.json", content=b'{"ok": true}')
    make_artifact(run, name="checkpoint-1.zip", content=b"ckpt", kind=Artifact.Kind.CHECKPOINT)

    detail = api.get(f"/api/v1/runs/{run.pk}/").json()
    assert detail["id"] == run.pk
    assert detail["status"] == "running"
    assert detail["attempt"] == 1
    assert detail["metrics"] == {"loss": 0.5}
    assert detail["error"] == ""
    assert detail["model_version"] is None

    assert api.get(f"/api/v1/runs/{run.pk}/metrics/").json() == {
        "accuracy": [{"step": 1, "value": 0.25, "time": time.isoformat()}],
        "loss": [{"step": 1, "value": 0.9, "time": time.isoformat()}, {"step": 2, "value": 0.5, "time": time.isoformat()}],
    }

    logs = api.get(f"/api/v1/runs/{run.pk}/logs/").json()
    assert [(line["level"], line["message"]) for line in logs] == [("info", "starting"), ("warning", "slow")]
    assert [line["message"] for line in api.get(f"/api/v1/runs/{run.pk}/logs/?after={first.pk}").json()] == ["slow"]

    artifacts = api.get(f"/api/v1/runs/{run.pk}/artifacts/").json()
    assert [(a["name"], a["kind"], a["size"]) for a in artifacts] == [("classification_report.json", "report", 12)]
    assert artifacts[0]["download_url"] == f"http://testserver/api/v1/artifacts/{report.pk}/download/"


def test_logs_after_must_be_an_id(api, user):
    run = make_run(user)
    assert_error_shape(api.get(f"/api/v1/runs/{run.pk}/logs/?after=latest"), 400, "after")


def test_run_with_model_version(api, user):
    run = make_run(user, status=RunStatus.SUCCEEDED)
    model = make_model_version(user, name="traffic_signs", version=3, run=run)
    assert api.get(f"/api/v1/runs/{run.pk}/").json()["model_version"] == {
        "id": model.pk, "name": "traffic_signs", "version": 3,
    }


def test_other_users_run_is_404_everywhere(api, other_api, user, sent_tasks):
    run = make_run(user, status=RunStatus.SUCCEEDED)
    artifact = make_artifact(run, name="report.json", content=b"secret")
    for method, path in [
        ("get", f"/api/v1/runs/{run.pk}/"),
        ("get", f"/api/v1/runs/{run.pk}/metrics/"),
        ("get", f"/api/v1/runs/{run.pk}/logs/"),
        ("get", f"/api/v1/runs/{run.pk}/artifacts/"),
        ("post", f"/api/v1/runs/{run.pk}/cancel/"),
        ("delete", f"/api/v1/runs/{run.pk}/"),
        ("get", f"/api/v1/artifacts/{artifact.pk}/download/"),
    ]:
        response = getattr(other_api, method)(path)
        body = assert_error_shape(response, 404)
        assert body["message"] == "Not found.", path
    assert Run.objects.filter(pk=run.pk, status=RunStatus.SUCCEEDED).exists()
    assert default_storage.exists(artifact.storage_path)
    assert other_api.get("/api/v1/runs/").json()["results"] == []
    # The owner still sees it all.
    assert api.get(f"/api/v1/runs/{run.pk}/").status_code == 200


def test_missing_run_is_404(api):
    assert_error_shape(api.get("/api/v1/runs/424242/"), 404)


# Artifact downloads ----------------------------------------------------------------------------------------


CONTENT = bytes(range(256)) * 4  # 1024 bytes


def download(api, artifact, **headers):
    response = api.get(f"/api/v1/artifacts/{artifact.pk}/download/", **headers)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    response.close()
    return response, body


def test_download_whole_artifact(api, user):
    artifact = make_artifact(make_run(user), name="confusion_matrix.png", content=CONTENT, kind=Artifact.Kind.PLOT)
    response, body = download(api, artifact)
    assert response.status_code == 200
    assert body == CONTENT
    assert response["Content-Type"] == "image/png"
    assert response["Accept-Ranges"] == "bytes"
    assert response["Content-Disposition"] == 'attachment; filename="confusion_matrix.png"'
    assert response["Content-Length"] == "1024"


@pytest.mark.parametrize(
    "header, start, end",
    [("bytes=0-99", 0, 99), ("bytes=1000-", 1000, 1023), ("bytes=-24", 1000, 1023), ("bytes=1020-5000", 1020, 1023),
     ("bytes=5-5", 5, 5)],
)
def test_download_range(api, user, header, start, end):
    artifact = make_artifact(make_run(user), name="model.zip", content=CONTENT, kind=Artifact.Kind.MODEL)
    response, body = download(api, artifact, HTTP_RANGE=header)
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {start}-{end}/1024"
    assert response["Content-Length"] == str(end - start + 1)
    assert body == CONTENT[start : end + 1]


@pytest.mark.parametrize("header", ["bytes=1024-", "bytes=2000-3000", "bytes=10-5"])
def test_download_unsatisfiable_range(api, user, header):
    artifact = make_artifact(make_run(user), name="model.zip", content=CONTENT, kind=Artifact.Kind.MODEL)
    response, _ = download(api, artifact, HTTP_RANGE=header)
    assert response.status_code == 416
    assert response["Content-Range"] == "bytes */1024"


def test_download_missing_artifact_is_404(api):
    assert_error_shape(api.get("/api/v1/artifacts/424242/download/"), 404)


# Cancel and delete ----------------------------------------------------------------------------------------------


def test_cancel_queued_run(api, user):
    run = make_run(user, status=RunStatus.QUEUED)
    response = api.post(f"/api/v1/runs/{run.pk}/cancel/")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancel_requested"] is True


def test_cancel_finished_run_is_409(api, user):
    run = make_run(user, status=RunStatus.SUCCEEDED)
    body = assert_error_shape(api.post(f"/api/v1/runs/{run.pk}/cancel/"), 409)
    assert body["message"] == f"Run {run.pk} already succeeded."


def test_delete_queued_run_is_409(api, user):
    run = make_run(user, status=RunStatus.QUEUED)
    body = assert_error_shape(api.delete(f"/api/v1/runs/{run.pk}/"), 409)
    assert body["message"] == f"Run {run.pk} is queued; cancel it before deleting it."
    assert Run.objects.filter(pk=run.pk).exists()


def test_delete_finished_run_removes_artifacts(api, user, django_capture_on_commit_callbacks):
    run = make_run(user, status=RunStatus.FAILED)
    artifact = make_artifact(run, name="report.json", content=b"{}")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete(f"/api/v1/runs/{run.pk}/")
    assert response.status_code == 204
    assert not Run.objects.filter(pk=run.pk).exists()
    assert not default_storage.exists(artifact.storage_path)
    assert_error_shape(api.get(f"/api/v1/artifacts/{artifact.pk}/download/"), 404)


# Datasets ---------------------------------------------------------------------------------------------------------


def upload(api, *, name="signs", kind="gtsrb", content: bytes | None = None, filename="signs.zip"):
    content = zip_bytes({"00000/00000_00000.ppm": b"P6 1 1 255\n\x00\x00\x00"}) if content is None else content
    return api.post(
        "/api/v1/datasets/",
        {"name": name, "kind": kind, "file": SimpleUploadedFile(filename, content, content_type="application/zip")},
        format="multipart",
    )


def test_dataset_upload(api, user, sent_tasks, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(api)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "validating"
    assert body["name"] == "signs"
    assert body["kind"] == "gtsrb"
    assert body["source"] == "upload"
    assert body["slug"] == str(body["id"])
    dataset = Dataset.objects.get(pk=body["id"])
    assert dataset.owner == user
    assert dataset.bytes == body["bytes"] > 0
    assert default_storage.exists(dataset.storage_path)
    assert sent_tasks == [("worker.tasks.dataset_validate", [dataset.pk], {})]


def test_dataset_upload_unknown_kind(api, sent_tasks):
    body = assert_error_shape(upload(api, kind="mnist_csv"), 400, "kind")
    assert "gtsrb" in body["errors"]["kind"][0]
    assert not Dataset.objects.exists()
    assert sent_tasks == []


def test_dataset_upload_not_a_zip(api):
    assert_error_shape(upload(api, content=b"just some text", filename="signs.zip"), 400, "file")
    assert not Dataset.objects.exists()


def test_dataset_upload_over_the_size_limit(api, settings):
    settings.DATASET_MAX_UPLOAD_BYTES = 10
    assert_error_shape(upload(api), 400, "file")
    assert not Dataset.objects.exists()


def test_dataset_upload_missing_everything(api):
    response = api.post("/api/v1/datasets/", {}, format="multipart")
    assert_error_shape(response, 400, "name", "kind", "file")


def test_datasets_are_private_but_builtins_are_shared(api, other_api, user):
    builtin_datasets_ensure()
    mine = upload(api).json()
    for client in (api, other_api):
        slugs = [dataset["slug"] for dataset in client.get("/api/v1/datasets/").json()]
        assert "builtin:synthetic_signs" in slugs
    assert str(mine["id"]) in [d["slug"] for d in api.get("/api/v1/datasets/").json()]
    assert str(mine["id"]) not in [d["slug"] for d in other_api.get("/api/v1/datasets/").json()]

    assert api.get(f"/api/v1/datasets/{mine['id']}/").status_code == 200
    assert_error_shape(other_api.get(f"/api/v1/datasets/{mine['id']}/"), 404)
    assert_error_shape(other_api.delete(f"/api/v1/datasets/{mine['id']}/"), 404)
    assert Dataset.objects.filter(pk=mine["id"]).exists()

    builtin = Dataset.objects.get(source=Dataset.Source.BUILTIN, name="synthetic_signs")
    assert other_api.get(f"/api/v1/datasets/{builtin.pk}/").json()["slug"] == "builtin:synthetic_signs"
    assert_error_shape(other_api.delete(f"/api/v1/datasets/{builtin.pk}/"), 404)


def test_dataset_delete(api, user, django_capture_on_commit_callbacks):
    dataset = Dataset.objects.get(pk=upload(api).json()["id"])
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/v1/datasets/{dataset.pk}/").status_code == 204
    assert not Dataset.objects.filter(pk=dataset.pk).exists()
    assert not default_storage.exists(dataset.storage_path)


def test_dataset_in_use_is_not_deleted(api, user):
    dataset = Dataset.objects.create(owner=user, name="used", kind="gtsrb", status=Dataset.Status.READY)
    make_run(user, dataset=dataset, status=RunStatus.SUCCEEDED)
    assert_error_shape(api.delete(f"/api/v1/datasets/{dataset.pk}/"), 409)


# Models -----------------------------------------------------------------------------------------------------------


def model_ids(client) -> list[int]:
    response = client.get("/api/v1/models/")
    assert response.status_code == 200
    return sorted(model["id"] for model in response.json())


def test_model_visibility(api, other_api, user, other_user, django_user_model):
    private = make_model_version(user, name="private")
    shared = make_model_version(user, name="shared", visibility=ModelVersion.Visibility.SHARED)
    shared.shared_with.add(other_user)
    shared_elsewhere = make_model_version(user, name="shared-elsewhere", visibility=ModelVersion.Visibility.SHARED)
    public = make_model_version(user, name="public", visibility=ModelVersion.Visibility.PUBLIC)
    theirs = make_model_version(other_user, name="theirs")
    third = django_user_model.objects.create_user(username="carol", password="carol-password")
    shared_elsewhere.shared_with.add(third)

    assert model_ids(api) == sorted([private.pk, shared.pk, shared_elsewhere.pk, public.pk])
    assert model_ids(other_api) == sorted([shared.pk, public.pk, theirs.pk])

    assert api.get(f"/api/v1/models/{shared.pk}/").json()["shared_with"] == ["bob"]
    seen_by_bob = other_api.get(f"/api/v1/models/{shared.pk}/").json()
    assert seen_by_bob["owner"] == "alice"
    assert seen_by_bob["shared_with"] == []  # who else may use it is the owner's business
    for hidden in (private, shared_elsewhere):
        assert_error_shape(other_api.get(f"/api/v1/models/{hidden.pk}/"), 404)


def test_model_patch_by_non_owner_is_404(other_api, user):
    model = make_model_version(user, visibility=ModelVersion.Visibility.PUBLIC)
    assert_error_shape(other_api.patch(f"/api/v1/models/{model.pk}/", {"visibility": "private"}, format="json"), 404)
    model.refresh_from_db()
    assert model.visibility == "public"


def test_model_patch_moves_alias(api, user, other_user):
    first = make_model_version(user, name="signs", version=1)
    second = make_model_version(user, name="signs", version=2)
    other_name = make_model_version(user, name="other", version=1)
    theirs = make_model_version(other_user, name="signs", version=1)
    for model in (other_name, theirs):
        ModelAlias.objects.create(model_version=model, owner=model.owner, name=model.name, alias="production")

    response = api.patch(f"/api/v1/models/{first.pk}/", {"aliases": ["production", "stable"]}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["aliases"] == ["production", "stable"]

    response = api.patch(f"/api/v1/models/{second.pk}/", {"aliases": ["production"]}, format="json")
    assert response.json()["aliases"] == ["production"]
    assert api.get(f"/api/v1/models/{first.pk}/").json()["aliases"] == ["stable"]
    # Aliases are per owner and model name: the others keep theirs.
    assert list(other_name.aliases.values_list("alias", flat=True)) == ["production"]
    assert list(theirs.aliases.values_list("alias", flat=True)) == ["production"]

    response = api.patch(f"/api/v1/models/{second.pk}/", {"aliases": []}, format="json")
    assert response.json()["aliases"] == []


def test_model_patch_sharing(api, other_api, user, other_user):
    model = make_model_version(user)
    response = api.patch(f"/api/v1/models/{model.pk}/", {"visibility": "shared", "shared_with": ["bob"]}, format="json")
    assert response.status_code == 200
    assert (response.json()["visibility"], response.json()["shared_with"]) == ("shared", ["bob"])
    assert model_ids(other_api) == [model.pk]

    api.patch(f"/api/v1/models/{model.pk}/", {"shared_with": []}, format="json")
    assert model_ids(other_api) == []
    api.patch(f"/api/v1/models/{model.pk}/", {"visibility": "public"}, format="json")
    assert model_ids(other_api) == [model.pk]


def test_model_patch_unknown_user(api, user):
    model = make_model_version(user)
    body = assert_error_shape(
        api.patch(f"/api/v1/models/{model.pk}/", {"shared_with": ["bob", "nobody"]}, format="json"), 400, "shared_with"
    )
    assert body["errors"]["shared_with"] == ["Unknown users: bob, nobody."]
    assert list(model.shared_with.all()) == []


def test_model_patch_bad_visibility(api, user):
    model = make_model_version(user)
    assert_error_shape(api.patch(f"/api/v1/models/{model.pk}/", {"visibility": "secret"}, format="json"), 400, "visibility")
    model.refresh_from_db()
    assert model.visibility == "private"


@pytest.mark.parametrize(
    "aliases, field, message",
    [
        (["a@b"], "aliases", "Each alias is a non-empty string of at most 64 characters without '@'."),
        (["x" * 65], "aliases", "Each alias is a non-empty string of at most 64 characters without '@'."),
        (["ok", ""], "aliases.1", "This field may not be blank."),
        ("production", "aliases", 'Expected a list of items but got type "str".'),
    ],
)
def test_model_patch_bad_alias(api, user, aliases, field, message):
    model = make_model_version(user)
    response = api.patch(f"/api/v1/models/{model.pk}/", {"aliases": aliases}, format="json")
    assert assert_error_shape(response, 400, field)["errors"] == {field: [message]}
    assert not model.aliases.exists()


def test_predict_on_a_model_you_cannot_see_is_404(other_api, user, sent_tasks):
    model = make_model_version(user, name="signs")
    ModelAlias.objects.create(model_version=model, owner=user, name="signs", alias="production")
    image = SimpleUploadedFile("sign.png", b"\x89PNG\r\n\x1a\n", content_type="image/png")
    body = assert_error_shape(other_api.post(f"/api/v1/models/{model.pk}/predict/", {"file": image}, format="multipart"), 404)
    assert body["message"] == "Not found."
    assert_error_shape(other_api.post("/api/v1/models/signs@production/predict/", {"x": 1}, format="json"), 404)
    assert_error_shape(other_api.post("/api/v1/models/424242/predict/", {"x": 1}, format="json"), 404)
    assert sent_tasks == []


def test_predict_unauthenticated_is_401(user):
    model = make_model_version(user, visibility=ModelVersion.Visibility.PUBLIC)
    assert_error_shape(APIClient().post(f"/api/v1/models/{model.pk}/predict/", {"x": 1}, format="json"), 401)


# Schema and docs ------------------------------------------------------------------------------------------------


def test_openapi_schema():
    response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "dlsite API"
    for path in ("/api/v1/runs/", "/api/v1/runs/{run_id}/", "/api/v1/models/{reference}/predict/", "/api/v1/health/"):
        assert path in schema["paths"], path
    assert {"get", "post"} <= set(schema["paths"]["/api/v1/runs/"])


def test_swagger_ui_is_served_locally():
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "swagger" in body.lower()
    assert "cdn" not in body
    assert "unpkg" not in body
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", body), "docs load something from another host"
    static_paths = re.findall(r"""/static/([^"'\s]+)""", body)
    assert static_paths, "docs load no local static files"
    for path in static_paths:
        assert finders.find(path.split("?")[0]), f"static file {path} is missing"


def asgi_get(path: str):
    """GET through the ASGI application that uvicorn serves (not the test client's WSGI path)."""
    import httpx
    from asgiref.sync import async_to_sync
    from django.core.signals import request_started
    from django.db import close_old_connections

    from dlsite.asgi import application

    async def get():
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            return await client.get(path)

    # As Django's test client does: the request must not close the test's database connection.
    request_started.disconnect(close_old_connections)
    try:
        return async_to_sync(get)()
    finally:
        request_started.connect(close_old_connections)


def test_swagger_ui_static_files_are_served_by_the_asgi_application():
    page = asgi_get("/api/docs/")
    assert page.status_code == 200
    static_paths = re.findall(r"""["'](/static/[^"'\s]+)""", page.text)
    assert len(static_paths) >= 3
    for path in static_paths:
        response = asgi_get(path)
        assert response.status_code == 200, path
        assert len(response.content) > 100, path
    assert asgi_get("/static/web/site.css").status_code == 200
