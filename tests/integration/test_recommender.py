"""A tiny recommender run through the real platform: REST submit, the session's Celery worker, the
built-in MovieLens, the registered model version, and recommendations over REST."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from apps.experiments.models import Run, RunStatus
from tests.conftest import wait_for
from tests.worker.pipelines.recommender.conftest import clustered_interactions

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# Small enough that each model trains in seconds on the 336 interactions below.
TINY = {
    "factors": 8,
    "embedding_size": 8,
    "hidden_size": 8,
    "num_layers": 1,
    "epochs": 1,
    "batch_size": 50,
    "steps_per_epoch": 2,
    "split": "per_user",
    "k": 5,
}
MODELS = ("popularity", "als", "mf", "bpr", "lstm", "lstm_user")


def wait_for_status(run_id: int, statuses: set[str], timeout: float) -> Run:
    def finished():
        run = Run.objects.get(pk=run_id)
        return run if run.status in statuses else None

    return wait_for(finished, timeout=timeout, interval=0.2, message=f"run {run_id} to reach {statuses}")


def test_tiny_als_run_on_the_builtin_movielens_recommends_over_rest(celery_worker, api):
    response = api.post(
        "/api/v1/runs/",
        {"pipeline": "recommender", "params": {"model": "als", "epochs": 2, "factors": 8}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    run_id = response.json()["id"]

    run = wait_for_status(run_id, {RunStatus.SUCCEEDED, RunStatus.FAILED}, timeout=300)
    assert run.status == RunStatus.SUCCEEDED, run.error + run.traceback
    assert run.params["regularization"] == 1e-6 and run.params["split"] == "auto"  # resolved at submission
    assert run.dataset.name == "movielens_small"

    metrics = api.get(f"/api/v1/runs/{run_id}/metrics/").json()
    assert [point["step"] for point in metrics["precision_at_5"]] == [1, 2]
    assert metrics["evaluated_users"][0]["value"] == 671.0  # per_user split: every MovieLens user
    assert 0.0 < metrics["baseline_precision_at_5"][0]["value"] < 1.0
    assert "lift_precision_at_5" in metrics

    artifacts = {a["name"]: a for a in api.get(f"/api/v1/runs/{run_id}/artifacts/").json()}
    assert {"evaluation.json", "precision_per_epoch.png", "comparison.png", "model.zip"} <= set(artifacts)
    report = json.loads(b"".join(api.get(artifacts["evaluation.json"]["download_url"]).streaming_content))
    assert report["summary"]["split"] == "per_user" and report["summary"]["evaluated_users"] == 671
    logs = [line["message"] for line in api.get(f"/api/v1/runs/{run_id}/logs/").json()]
    assert any(line.startswith("epoch 02: precision:") for line in logs)

    model_id = api.get(f"/api/v1/runs/{run_id}/").json()["model_version"]["id"]
    predicted = api.post(f"/api/v1/models/{model_id}/predict/", {"user_id": 1, "k": 5}, format="json")
    assert predicted.status_code == 200, predicted.content
    body = predicted.json()
    assert body["fallback"] is None and len(body["recommendations"]) == 5
    assert all(item["title"] for item in body["recommendations"])  # movie titles, not bare ids
    assert body["history"] and not {i["item"] for i in body["history"]} & {i["item"] for i in body["recommendations"]}

    cold = api.post(f"/api/v1/models/{model_id}/predict/", {"user_id": "someone new", "k": 3}, format="json").json()
    assert cold["fallback"] == "popularity" and len(cold["recommendations"]) == 3

    refused = api.post(f"/api/v1/models/{model_id}/predict/", {"history": ["1"]}, format="json")
    assert refused.status_code == 400
    assert (
        refused.json()["message"] == "history: only the lstm and lstm_user models take a history; this is a als model"
    )


def interactions_zip() -> io.BytesIO:
    rows = "\n".join(f"{user},{item},{stamp}" for user, item, stamp in clustered_interactions())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("shop/interactions.csv", "user,item,timestamp\n" + rows + "\n")
    buffer.seek(0)
    buffer.name = "shop.zip"
    return buffer


def test_every_model_trains_on_an_uploaded_interactions_csv_and_recommends(celery_worker, api):
    uploaded = api.post(
        "/api/v1/datasets/", {"name": "shop", "kind": "interactions", "file": interactions_zip()}, format="multipart"
    )
    assert uploaded.status_code == 201, uploaded.json()

    def validated():
        body = api.get(f"/api/v1/datasets/{uploaded.json()['id']}/").json()
        return body if body["status"] != "validating" else None

    dataset = wait_for(validated, timeout=60, message="the upload's validation")
    assert dataset["status"] == "ready", dataset["error"]
    assert (dataset["stats"]["rows"], dataset["stats"]["users"], dataset["stats"]["items"]) == (336, 24, 30)

    run_ids = {}
    for model in MODELS:
        response = api.post(
            "/api/v1/runs/",
            {"pipeline": "recommender", "dataset": dataset["id"], "params": {**TINY, "model": model}},
            format="json",
        )
        assert response.status_code == 201, response.json()
        run_ids[model] = response.json()["id"]
    for model, run_id in run_ids.items():
        run = wait_for_status(run_id, {RunStatus.SUCCEEDED, RunStatus.FAILED}, timeout=240)
        assert run.status == RunStatus.SUCCEEDED, f"{model}: {run.error}{run.traceback}"
        metrics = api.get(f"/api/v1/runs/{run_id}/metrics/").json()
        assert metrics["evaluated_users"][0]["value"] == 24.0
        assert 0.0 <= metrics["precision_at_5"][-1]["value"] <= 1.0
        assert "baseline_precision_at_5" in metrics
        if model.startswith("lstm"):
            assert "top5_accuracy" in metrics and "top5_accuracy_book_evaluation" in metrics

        model_id = api.get(f"/api/v1/runs/{run_id}/").json()["model_version"]["id"]
        known = api.post(f"/api/v1/models/{model_id}/predict/", {"user_id": "u4", "k": 3}, format="json")
        assert known.status_code == 200, known.content
        assert known.json()["fallback"] is None and len(known.json()["recommendations"]) == 3
        cold = api.post(f"/api/v1/models/{model_id}/predict/", {"user_id": "stranger", "k": 3}, format="json").json()
        assert cold["fallback"] == "popularity"
        session = api.post(f"/api/v1/models/{model_id}/predict/", {"history": ["i1", "i2"], "k": 2}, format="json")
        assert session.status_code == (200 if model.startswith("lstm") else 400), session.content
