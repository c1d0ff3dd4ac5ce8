"""stock_forecast through the real platform: tiny runs of each model on the session's Celery worker
(REST submit, Postgres/Redis), then forecasts with the model versions they registered."""

from __future__ import annotations

import pytest

from apps.experiments.models import Run, RunStatus
from tests.conftest import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.tf, pytest.mark.django_db(transaction=True)]

TINY_COSINE = {"preset": "cosine", "epochs": 3, "units": 4, "cosine_points": 80, "train_size": 40, "window": 8}
# The default dataset (built-in MSFT 2000-2013), the last 100 windows for testing.
TINY_MSFT = {"model": "linear", "epochs": 3, "train_size": 3150, "normalize": True}
BOOK_METRICS = {"mse", "mae", "naive_mse", "naive_mae", "naive_mse_book_formula", "naive_mae_book_formula"}


def finished(run_id: int) -> Run:
    def done():
        run = Run.objects.get(pk=run_id)
        return run if run.status in {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED} else None

    return wait_for(done, timeout=240, interval=0.2, message=f"run {run_id} to finish")


def test_each_model_trains_on_the_worker_and_forecasts(celery_worker, api, user, client):
    submissions = {
        "linear (default dataset)": {"pipeline": "stock_forecast", "params": TINY_MSFT},
        **{
            model: {"pipeline": "stock_forecast", "dataset": "builtin:cosine", "params": {**TINY_COSINE, "model": model}}
            for model in ("lstm", "gru", "rnn")
        },
    }
    run_ids = {}
    for label, body in submissions.items():
        response = api.post("/api/v1/runs/", body, format="json")
        assert response.status_code == 201, response.json()
        run_ids[label] = response.json()["id"]

    for label, run_id in run_ids.items():
        run = finished(run_id)
        assert run.status == RunStatus.SUCCEEDED, f"{label}: {run.error}\n{run.traceback}"
        assert [change.to_status for change in run.status_changes.all()] == ["queued", "running", "succeeded"]
        assert run.dataset_hash

        metrics = api.get(f"/api/v1/runs/{run_id}/metrics/").json()
        assert BOOK_METRICS <= set(metrics), label
        assert [point["step"] for point in metrics["train_mse"]] == [1, 2, 3]
        artifacts = {artifact["name"] for artifact in api.get(f"/api/v1/runs/{run_id}/artifacts/").json()}
        assert {"forecast.png", "test_error.png", "training_curve.png", "evaluation.json", "predictions.csv",
                "model.zip"} <= artifacts  # fmt: skip

    default_run = Run.objects.get(pk=run_ids["linear (default dataset)"])
    assert default_run.dataset.name == "msft"
    assert default_run.params["learning_rate"] == 0.5 and default_run.params["optimizer"] == "adam"  # the book's

    detail = api.get(f"/api/v1/runs/{run_ids['lstm']}/").json()
    model_id = detail["model_version"]["id"]
    assert detail["model_version"]["name"] == "stock_forecast"
    history = [0.1 * day for day in range(10)]
    one = api.post(f"/api/v1/models/{model_id}/predict/", {"history": history}, format="json")
    assert one.status_code == 200, one.content
    assert set(one.json()) == {"prediction", "forecast", "horizon", "window"}
    assert one.json()["window"] == 8 and len(one.json()["forecast"]) == 1
    several = api.post(f"/api/v1/models/{model_id}/predict/", {"history": history, "horizon": 4}, format="json")
    assert several.status_code == 200
    assert len(several.json()["forecast"]) == 4
    assert several.json()["forecast"][0] == pytest.approx(one.json()["prediction"])

    client.force_login(user)
    page = client.get("/models/").content.decode()
    assert f'id="try-{model_id}-history"' in page and f'id="try-{model_id}-chart"' in page  # stock_forecast.html

    too_short = api.post(f"/api/v1/models/{model_id}/predict/", {"history": [1, 2]}, format="json")
    assert too_short.status_code == 400
    assert too_short.json()["message"] == "history: 2 values given, the model needs the last 8"

    msft_model = api.get(f"/api/v1/runs/{run_ids['linear (default dataset)']}/").json()["model_version"]["id"]
    prices = [27.0 + 0.05 * day for day in range(20)]
    forecast = api.post(f"/api/v1/models/{msft_model}/predict/", {"history": prices, "horizon": 2}, format="json")
    assert forecast.status_code == 200, forecast.content
    assert len(forecast.json()["forecast"]) == 2 and forecast.json()["window"] == 20
