"""External runs over REST (like MLflow's create_run / log_batch / set_terminated): created running,
metrics logged in batches, finished by their client; owner only."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.utils import timezone

from apps.experiments import services
from apps.experiments.models import Metric, Run, RunStatus, RunStatusChange
from tests.apps.factories import make_run
from tests.apps.test_api import assert_error_shape

pytestmark = pytest.mark.django_db

T0_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z
T0_TEXT = "2023-11-14T22:13:20+00:00"


def create_external(api, **payload) -> dict:
    response = api.post("/api/v1/runs/", {"external": True, **payload}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def post_metrics(api, run_id: int, points, **options):
    return api.post(f"/api/v1/runs/{run_id}/metrics/", {"metrics": points}, format="json", **options)


def stored(run_id: int) -> list[tuple[str, int, float]]:
    return list(Metric.objects.filter(run_id=run_id).order_by("key", "step").values_list("key", "step", "value"))


@pytest.fixture
def sent_events(monkeypatch):
    """Events sent to websocket groups after commit, as (run id, events)."""
    sent = []
    monkeypatch.setattr(
        "apps.experiments.events.events_send", lambda *, run_id, events, **_: sent.append((run_id, events))
    )
    return sent


# Creating ---------------------------------------------------------------------------------------------


def test_create_external_run(api, user, sent_tasks, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        body = create_external(api, params={"lr": 0.1, "layers": [64, 32], "optimizer": {"name": "sgd"}})

    assert body["status"] == "running"
    assert body["external"] is True
    assert body["pipeline"] == "external"
    assert body["experiment"] == "external"
    assert body["params"] == {"lr": 0.1, "layers": [64, 32], "optimizer": {"name": "sgd"}}
    assert (body["attempt"], body["queue"], body["gpus"], body["dataset"], body["progress"]) == (1, "", 0, None, 0.0)
    assert body["started_at"] is not None and body["finished_at"] is None
    run = Run.objects.get(pk=body["id"])
    assert run.owner == user
    assert run.heartbeat_at is None  # no worker beats for it: the reaper leaves it alone
    assert list(RunStatusChange.objects.filter(run=run).values_list("attempt", "from_status", "to_status", "reason")) == [
        (1, "", "running", "created by an external client")
    ]
    assert sent_tasks == []


def test_create_external_run_with_a_pipeline_name_and_experiment(api, user):
    first = create_external(api, pipeline="my_script", experiment="sweeps")
    second = create_external(api, pipeline="my_script", experiment="sweeps")

    assert (first["pipeline"], first["experiment"], first["params"]) == ("my_script", "sweeps", {})
    assert Run.objects.get(pk=second["id"]).experiment_id == Run.objects.get(pk=first["id"]).experiment_id
    assert user.experiments.get(name="sweeps").pipeline == "my_script"


def test_external_run_into_an_experiment_of_another_pipeline(api, user):
    make_run(user, experiment="signs", pipeline="traffic_signs")
    response = api.post("/api/v1/runs/", {"external": True, "experiment": "signs"}, format="json")
    assert assert_error_shape(response, 400, "experiment")["errors"] == {
        "experiment": ["Experiment 'signs' holds traffic_signs runs."]
    }


@pytest.mark.parametrize(
    "payload, errors",
    [
        ({"dataset": "builtin:synthetic_signs"}, {"dataset": ["Not used by external runs."]}),
        ({"queue": "training", "gpus": 2}, {"queue": ["Not used by external runs."], "gpus": ["Not used by external runs."]}),
        ({"parent": 1}, {"parent": ["Not used by external runs."]}),
        ({"params": [1, 2]}, {"params": ["Expected a JSON object."]}),
        ({"pipeline": "p" * 65}, {"pipeline": ["Ensure this field has no more than 64 characters."]}),
        ({"external": "maybe"}, {"external": ["Must be a valid boolean."]}),
    ],
)
def test_create_external_run_refused(api, payload, errors, sent_tasks):
    response = api.post("/api/v1/runs/", {"external": True, **payload}, format="json")
    assert assert_error_shape(response, 400, *errors)["errors"] == errors
    assert not Run.objects.exists()


def test_a_platform_run_still_needs_a_pipeline(api):
    response = api.post("/api/v1/runs/", {"external": False}, format="json")
    assert assert_error_shape(response, 400, "pipeline")["errors"] == {"pipeline": ["This field is required."]}


# Logging metrics ----------------------------------------------------------------------------------------


def test_log_a_batch(api, sent_events, django_capture_on_commit_callbacks):
    run_id = create_external(api)["id"]
    points = [
        {"key": "loss", "value": 0.9, "step": 0, "timestamp": T0_MS},
        {"key": "loss", "value": 0.5, "step": 1, "timestamp": T0_MS + 1500},
        {"key": "accuracy", "value": 1, "step": 1, "timestamp": T0_MS + 1500},
    ]
    with django_capture_on_commit_callbacks(execute=True):
        response = post_metrics(api, run_id, points)

    assert response.status_code == 200, response.content
    assert response.json() == {"count": 3}
    assert stored(run_id) == [("accuracy", 1, 1.0), ("loss", 0, 0.9), ("loss", 1, 0.5)]
    times = dict(Metric.objects.filter(run_id=run_id, key="loss").values_list("step", "time"))
    assert times == {0: datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC), 1: datetime(2023, 11, 14, 22, 13, 21, 500000, tzinfo=UTC)}
    run = api.get(f"/api/v1/runs/{run_id}/").json()
    assert run["metrics"] == {"loss": 0.5, "accuracy": 1.0}
    assert (run["status"], run["current_step"]) == ("running", 1)
    assert sent_events == [(run_id, [{
        "type": "metrics",
        "metrics": {
            "loss": [{"step": 0, "value": 0.9, "time": T0_TEXT}, {"step": 1, "value": 0.5, "time": "2023-11-14T22:13:21.500000+00:00"}],
            "accuracy": [{"step": 1, "value": 1.0, "time": "2023-11-14T22:13:21.500000+00:00"}],
        },
        "seq": 1,
    }])]
    assert api.get(f"/api/v1/runs/{run_id}/metrics/").json()["loss"] == [
        {"step": 0, "value": 0.9, "time": T0_TEXT},  # as in the live event
        {"step": 1, "value": 0.5, "time": "2023-11-14T22:13:21.500000+00:00"},
    ]


def test_one_event_per_batch(api, sent_events, django_capture_on_commit_callbacks):
    run_id = create_external(api)["id"]
    for batch in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            points = [{"key": f"k{index}", "value": index, "step": batch} for index in range(50)]
            assert post_metrics(api, run_id, points).status_code == 200

    assert [events[0]["seq"] for _, events in sent_events] == [1, 2, 3]
    assert all(len(events) == 1 and len(events[0]["metrics"]) == 50 for _, events in sent_events)
    assert Run.objects.get(pk=run_id).event_seq == 3


def test_a_point_without_timestamp_is_now(api):
    run_id = create_external(api)["id"]
    before = timezone.now().replace(microsecond=0)
    post_metrics(api, run_id, [{"key": "loss", "value": 1.5, "step": 3}])
    (time,) = Metric.objects.filter(run_id=run_id).values_list("time", flat=True)
    assert before <= time <= timezone.now()


def test_repeated_steps_are_upserts(api):
    run_id = create_external(api)["id"]
    post_metrics(api, run_id, [{"key": "loss", "value": 1.0, "step": 1}, {"key": "loss", "value": 2.0, "step": 2}])
    # Again step 2 (a retried request) and, within one batch, step 3 twice: the last one wins.
    response = post_metrics(api, run_id, [
        {"key": "loss", "value": 2.5, "step": 2},
        {"key": "loss", "value": 3.0, "step": 3},
        {"key": "loss", "value": 3.5, "step": 3},
    ])

    assert response.json() == {"count": 3}
    assert stored(run_id) == [("loss", 1, 1.0), ("loss", 2, 2.5), ("loss", 3, 3.5)]
    assert Run.objects.get(pk=run_id).latest_metrics == {"loss": 3.5}


def test_the_latest_value_is_the_highest_steps(api):
    run_id = create_external(api)["id"]
    post_metrics(api, run_id, [{"key": "loss", "value": 0.2, "step": 10}, {"key": "accuracy", "value": 0.5, "step": 1}])
    # A backfill of earlier steps, then a new key: loss stays at step 10's value.
    post_metrics(api, run_id, [{"key": "loss", "value": 0.9, "step": 2}, {"key": "loss", "value": 0.8, "step": 3}])
    post_metrics(api, run_id, [{"key": "accuracy", "value": 0.7, "step": 1}, {"key": "lr", "value": 0.01, "step": 0}])

    run = Run.objects.get(pk=run_id)
    assert run.latest_metrics == {"loss": 0.2, "accuracy": 0.7, "lr": 0.01}
    assert run.latest_metric_steps == {"loss": 10, "accuracy": 1, "lr": 0}
    assert run.current_step == 10


def test_ten_thousand_points_in_one_request(api):
    run_id = create_external(api)["id"]
    points = [{"key": f"metric_{index % 10}", "value": index / 7, "step": index // 10} for index in range(10_000)]

    response = post_metrics(api, run_id, points)

    assert response.json() == {"count": 10_000}
    assert Metric.objects.filter(run_id=run_id).count() == 10_000
    assert Run.objects.get(pk=run_id).latest_metrics == {f"metric_{key}": (9990 + key) / 7 for key in range(10)}


def test_more_points_than_a_request_takes(api, settings):
    settings.METRICS_MAX_POINTS_PER_REQUEST = 3
    run_id = create_external(api)["id"]
    response = post_metrics(api, run_id, [{"key": "loss", "value": 1, "step": step} for step in range(4)])
    assert assert_error_shape(response, 400, "metrics")["errors"] == {"metrics": ["Expected at most 3 points; got 4."]}
    assert not Metric.objects.exists()


def test_an_empty_batch_logs_nothing(api, sent_events, django_capture_on_commit_callbacks):
    run_id = create_external(api)["id"]
    with django_capture_on_commit_callbacks(execute=True):
        response = post_metrics(api, run_id, [])
    assert response.json() == {"count": 0}
    assert sent_events == []


@pytest.mark.parametrize(
    "point, errors",
    [
        ("loss=1", {"metrics.0": ["Expected an object with key, value, step and optionally timestamp."]}),
        ({"key": "", "value": 1, "step": 0}, {"metrics.0.key": ["Expected a non-empty string of at most 100 characters."]}),
        ({"key": "k" * 101, "value": 1, "step": 0}, {"metrics.0.key": ["Expected a non-empty string of at most 100 characters."]}),
        ({"key": 7, "value": 1, "step": 0}, {"metrics.0.key": ["Expected a non-empty string of at most 100 characters."]}),
        ({"value": 1, "step": 0}, {"metrics.0.key": ["Expected a non-empty string of at most 100 characters."]}),
        ({"key": "lo\u0000ss", "value": 1, "step": 0}, {"metrics.0.key": ["A NUL character cannot be stored."]}),
        ({"key": "loss", "value": "0.5", "step": 0}, {"metrics.0.value": ["Expected a finite number."]}),
        ({"key": "loss", "value": True, "step": 0}, {"metrics.0.value": ["Expected a finite number."]}),
        ({"key": "loss", "value": None, "step": 0}, {"metrics.0.value": ["Expected a finite number."]}),
        ({"key": "loss", "value": 10**400, "step": 0}, {"metrics.0.value": ["Expected a finite number."]}),
        ({"key": "loss", "value": 1, "step": -1}, {"metrics.0.step": ["Expected an integer from 0 to 2147483647."]}),
        ({"key": "loss", "value": 1, "step": 1.0}, {"metrics.0.step": ["Expected an integer from 0 to 2147483647."]}),
        ({"key": "loss", "value": 1, "step": 2**31}, {"metrics.0.step": ["Expected an integer from 0 to 2147483647."]}),
        ({"key": "loss", "value": 1, "step": False}, {"metrics.0.step": ["Expected an integer from 0 to 2147483647."]}),
        ({"key": "loss", "value": 1, "step": 0, "timestamp": -1},
         {"metrics.0.timestamp": ["Expected milliseconds since the epoch, from 0 to the end of year 9999."]}),
        ({"key": "loss", "value": 1, "step": 0, "timestamp": "now"},
         {"metrics.0.timestamp": ["Expected milliseconds since the epoch, from 0 to the end of year 9999."]}),
        ({"key": "loss", "value": 1, "step": 0, "time": 5}, {"metrics.0.time": ["Unknown field."]}),
        ({"key": "", "value": "x", "step": -1},
         {"metrics.0.key": ["Expected a non-empty string of at most 100 characters."],
          "metrics.0.value": ["Expected a finite number."],
          "metrics.0.step": ["Expected an integer from 0 to 2147483647."]}),
    ],
)
def test_invalid_points_are_named(api, point, errors):
    run_id = create_external(api)["id"]
    response = post_metrics(api, run_id, [point])
    body = assert_error_shape(response, 400, *errors)
    assert body == {"message": "Invalid input.", "errors": errors}
    assert not Metric.objects.exists()


def test_errors_name_each_bad_point_and_nothing_is_written(api):
    run_id = create_external(api)["id"]
    points = [{"key": "loss", "value": step, "step": step} for step in range(5)]
    points[1]["value"] = "high"
    points[3]["step"] = -3
    response = post_metrics(api, run_id, points)
    assert assert_error_shape(response, 400, "metrics.1.value", "metrics.3.step")
    assert not Metric.objects.exists()


def test_a_value_that_json_reads_as_infinite(api):
    run_id = create_external(api)["id"]
    body = '{"metrics": [{"key": "loss", "value": 1e400, "step": 0}]}'
    response = api.post(f"/api/v1/runs/{run_id}/metrics/", body, content_type="application/json")
    assert assert_error_shape(response, 400, "metrics.0.value")


def test_only_the_first_hundred_bad_points_are_listed(api):
    run_id = create_external(api)["id"]
    response = post_metrics(api, run_id, [{"key": "", "value": 1, "step": 0}] * 500)
    assert sorted(assert_error_shape(response, 400, *[f"metrics.{index}.key" for index in range(100)])["errors"]) == sorted(
        f"metrics.{index}.key" for index in range(100)
    )


@pytest.mark.parametrize("body", [{}, {"metrics": {"key": "loss"}}, {"metrics": None}])
def test_the_batch_must_be_a_list(api, body):
    run_id = create_external(api)["id"]
    response = api.post(f"/api/v1/runs/{run_id}/metrics/", body, format="json")
    assert assert_error_shape(response, 400, "metrics")


def test_metrics_to_a_finished_run_are_409(api):
    run_id = create_external(api)["id"]
    api.post(f"/api/v1/runs/{run_id}/finish/", {"status": "succeeded"}, format="json")
    response = post_metrics(api, run_id, [{"key": "loss", "value": 1, "step": 0}])
    assert assert_error_shape(response, 409)["message"] == f"Run {run_id} is succeeded, not running."
    assert not Metric.objects.exists()


def test_metrics_to_a_platform_run_are_409(api, user):
    run = make_run(user, status=RunStatus.RUNNING)
    response = post_metrics(api, run.pk, [{"key": "loss", "value": 1, "step": 0}])
    assert assert_error_shape(response, 409)["message"] == (
        f"Run {run.pk} is not an external run: its worker reports and finishes it."
    )


def test_a_run_that_finishes_while_its_batch_is_written_takes_nothing(api, user, monkeypatch):
    run = services.run_create_external(user=user)
    finish_first = services._metric_upsert_columns

    def upsert_then_finish(**columns):
        finish_first(**columns)
        Run.objects.filter(pk=run.pk).update(status=RunStatus.FAILED)

    monkeypatch.setattr(services, "_metric_upsert_columns", upsert_then_finish)
    response = post_metrics(api, run.pk, [{"key": "loss", "value": 1, "step": 0}])
    assert assert_error_shape(response, 409)["message"] == f"Run {run.pk} is failed, not running."
    assert not Metric.objects.exists()


def test_others_runs_are_404(api, other_api):
    run_id = create_external(api)["id"]
    for response in (
        post_metrics(other_api, run_id, [{"key": "loss", "value": 1, "step": 0}]),
        other_api.post(f"/api/v1/runs/{run_id}/finish/", {"status": "failed"}, format="json"),
        post_metrics(api, 424242, [{"key": "loss", "value": 1, "step": 0}]),
    ):
        assert_error_shape(response, 404)
    assert not Metric.objects.exists()
    assert Run.objects.get(pk=run_id).status == RunStatus.RUNNING


# Finishing ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload, status, error, progress",
    [
        ({"status": "succeeded"}, "succeeded", "", 1.0),
        ({"status": "failed", "error": "CUDA out of memory"}, "failed", "CUDA out of memory", 0.0),
        ({"status": "cancelled"}, "cancelled", "", 0.0),
    ],
)
def test_finish(api, payload, status, error, progress, sent_events, django_capture_on_commit_callbacks):
    run_id = create_external(api)["id"]
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/runs/{run_id}/finish/", payload, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["error"], body["progress"]) == (status, error, progress)
    assert body["finished_at"] is not None
    assert RunStatusChange.objects.filter(run_id=run_id).values_list("from_status", "to_status", "reason").last() == (
        "running", status, "finished by its client"
    )
    assert sent_events == [(run_id, [{"type": "status", "status": status, "attempt": 1, "reason": "finished by its client", "seq": 1}])]


def test_finish_twice_is_409(api):
    run_id = create_external(api)["id"]
    api.post(f"/api/v1/runs/{run_id}/finish/", {"status": "failed"}, format="json")
    response = api.post(f"/api/v1/runs/{run_id}/finish/", {"status": "succeeded"}, format="json")
    assert assert_error_shape(response, 409)["message"] == f"Run {run_id} is failed, not running."
    assert Run.objects.get(pk=run_id).status == RunStatus.FAILED


def test_finish_a_platform_run_is_409(api, user):
    run = make_run(user, status=RunStatus.RUNNING)
    assert_error_shape(api.post(f"/api/v1/runs/{run.pk}/finish/", {"status": "succeeded"}, format="json"), 409)
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING


@pytest.mark.parametrize("payload", [{}, {"status": "running"}, {"status": "done"}])
def test_finish_needs_a_terminal_status(api, payload):
    run_id = create_external(api)["id"]
    assert_error_shape(api.post(f"/api/v1/runs/{run_id}/finish/", payload, format="json"), 400, "status")


def test_cancel_stops_an_external_run_at_once(api):
    run_id = create_external(api)["id"]

    response = api.post(f"/api/v1/runs/{run_id}/cancel/")

    assert response.status_code == 202
    assert (response.json()["status"], response.json()["cancel_requested"]) == ("cancelled", True)
    assert_error_shape(post_metrics(api, run_id, [{"key": "loss", "value": 1, "step": 0}]), 409)


def test_the_reaper_leaves_external_runs_alone(user, settings):
    from worker.runtime.reaper import runs_reap

    settings.RUN_HEARTBEAT_TIMEOUT = 0
    run = services.run_create_external(user=user)
    Run.objects.filter(pk=run.pk).update(started_at=timezone.now().replace(year=2020))

    runs_reap()

    run.refresh_from_db()
    assert (run.status, run.attempt) == (RunStatus.RUNNING, 1)


# The upsert itself ----------------------------------------------------------------------------------------


def test_metric_upsert_keeps_times_to_the_microsecond(user):
    run = make_run(user, status=RunStatus.RUNNING)
    time = datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC)
    services.metric_upsert(run_id=run.pk, points=[("loss", 1, 0.25, time), ("loss", 1, 0.5, time), ("acc", 1, 1.0, time)])
    assert list(Metric.objects.filter(run=run).order_by("key").values_list("key", "step", "value", "time")) == [
        ("acc", 1, 1.0, time), ("loss", 1, 0.5, time)
    ]


def test_keys_with_quotes_and_unicode_survive(api):
    run_id = create_external(api)["id"]
    keys = ['val/"top-1"', "loss\\train", "ça va, {x}", "tab\there"]
    post_metrics(api, run_id, [{"key": key, "value": 1, "step": 0} for key in keys])
    assert sorted(Metric.objects.filter(run_id=run_id).values_list("key", flat=True)) == sorted(keys)
    assert json.loads(json.dumps(Run.objects.get(pk=run_id).latest_metrics)) == dict.fromkeys(keys, 1.0)


def test_a_workers_nan_and_infinite_values_are_stored(user):
    from django.db import connection

    if connection.vendor == "sqlite":
        pytest.skip("SQLite stores NaN as NULL, which the value column refuses")
    run = make_run(user, status=RunStatus.RUNNING)
    time = datetime(2024, 1, 1, tzinfo=UTC)
    services.metric_upsert(run_id=run.pk, points=[("loss", 1, float("nan"), time), ("loss", 2, float("inf"), time)])
    values = dict(Metric.objects.filter(run=run).values_list("step", "value"))
    assert values[1] != values[1] and values[2] == float("inf")
