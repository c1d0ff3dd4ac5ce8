"""Run services: submission checks, the claim and its fencing, reports, cancel, re-queue, success, delete."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from apps.accounts.errors import ApiError
from apps.datasets.models import Dataset
from apps.experiments import services
from apps.experiments.models import Artifact, LogLine, Metric, Run, RunStatus, RunStatusChange
from apps.experiments.services import RunReport
from apps.registry.models import ModelVersion
from tests.apps.factories import make_artifact, make_run

pytestmark = pytest.mark.django_db

TRAIN_TASK = "worker.tasks.run_train"


def claim(run: Run, *, attempt: int | None = None, worker: str = "worker-1") -> Run | None:
    return services.run_claim(
        run_id=run.pk, attempt=attempt or run.attempt, worker=worker, code_version="abc123",
        package_versions={"numpy": "2.4.6"},
    )


def history(run: Run) -> list[tuple[int, str, str, str]]:
    return list(
        RunStatusChange.objects.filter(run=run).values_list("attempt", "from_status", "to_status", "reason")
    )


def submit(user, **kwargs) -> Run:
    kwargs.setdefault("pipeline", "traffic_signs")
    return services.run_submit(user=user, **kwargs)


# run_submit ------------------------------------------------------------------------------------------


def test_submit_unknown_pipeline(user):
    with pytest.raises(ApiError) as raised:
        submit(user, pipeline="no_such_pipeline")
    assert raised.value.status_code == 400
    assert raised.value.message == "Unknown pipeline 'no_such_pipeline'."
    assert list(raised.value.errors) == ["pipeline"]
    assert "traffic_signs" in raised.value.errors["pipeline"][0]
    assert not Run.objects.exists()


def test_submit_unknown_param_is_named(user):
    with pytest.raises(ApiError) as raised:
        submit(user, params={"epochs": 1, "max_epochs": 3})
    assert raised.value.errors == {"params.max_epochs": ["Unknown parameter."]}
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    "params, field",
    [({"epochs": "many"}, "params.epochs"), ({"epochs": 0}, "params.epochs"), ({"learning_rate": -1}, "params.learning_rate")],
)
def test_submit_invalid_value_is_named(user, params, field):
    with pytest.raises(ApiError) as raised:
        submit(user, params=params)
    assert list(raised.value.errors) == [field]
    assert len(raised.value.errors[field]) == 1
    assert not Run.objects.exists()


def test_submit_params_that_are_not_an_object(user):
    with pytest.raises(ApiError) as raised:
        submit(user, params=[1, 2])
    assert raised.value.errors == {"params": ["Expected an object of parameter names to values."]}


@pytest.mark.parametrize("dataset", [9999, "builtin:no_such_dataset", "not-an-id"])
def test_submit_unknown_dataset(user, dataset):
    with pytest.raises(ApiError) as raised:
        submit(user, dataset=dataset)
    assert raised.value.status_code == 400
    assert list(raised.value.errors) == ["dataset"]
    assert not Run.objects.exists()


def test_submit_refuses_another_users_dataset(user, other_user):
    theirs = Dataset.objects.create(owner=other_user, name="theirs", kind="gtsrb", status=Dataset.Status.READY)
    with pytest.raises(ApiError) as raised:
        submit(user, dataset=theirs.pk)
    assert raised.value.errors == {"dataset": [f"No dataset {theirs.pk} of yours."]}


def test_submit_refuses_a_dataset_still_validating(user):
    mine = Dataset.objects.create(owner=user, name="mine", kind="gtsrb", status=Dataset.Status.VALIDATING)
    with pytest.raises(ApiError) as raised:
        submit(user, dataset=mine.pk)
    assert list(raised.value.errors) == ["dataset"]


def test_submit_unknown_queue(user):
    with pytest.raises(ApiError) as raised:
        submit(user, queue="gpu-please")
    assert list(raised.value.errors) == ["queue"]


def test_submit_defaults(user, django_capture_on_commit_callbacks, sent_tasks):
    with django_capture_on_commit_callbacks(execute=True):
        run = submit(user, params={"epochs": 1})

    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
    assert run.attempt == 1
    assert run.owner == user
    assert run.queue == "training"
    assert run.params["epochs"] == 1
    assert run.params["learning_rate"] == 0.001
    assert run.params["batch_size"] == 256
    assert run.params["seed"] == 101
    assert run.seed == 101
    # The pipeline's default dataset, a built-in row shared by everyone.
    assert run.dataset.source == Dataset.Source.BUILTIN
    assert run.dataset.name == "synthetic_signs"
    assert run.dataset.owner is None
    assert run.dataset.slug == "builtin:synthetic_signs"
    # The experiment is named after the pipeline when none is given.
    assert run.experiment.name == "traffic_signs"
    assert run.experiment.pipeline == "traffic_signs"
    assert run.experiment.owner == user
    assert history(run) == [(1, "", "queued", "submitted")]
    assert sent_tasks == [(TRAIN_TASK, [run.pk, 1], {"queue": "training"})]


def test_submit_into_named_experiment_and_builtin_slug(user):
    first = submit(user, experiment="sweep", dataset="builtin:synthetic_signs")
    second = submit(user, experiment="sweep", queue="batch")
    assert first.experiment_id == second.experiment_id
    assert first.experiment.name == "sweep"
    assert second.queue == "batch"
    assert Dataset.objects.filter(source=Dataset.Source.BUILTIN, name="synthetic_signs").count() == 1


def test_submit_parent_must_be_own_run(user, other_user):
    theirs = make_run(other_user)
    with pytest.raises(ApiError) as raised:
        submit(user, parent=theirs.pk)
    assert raised.value.errors == {"parent": [f"No run {theirs.pk} of yours."]}
    mine = make_run(user)
    assert submit(user, parent=mine.pk).parent == mine


# run_claim --------------------------------------------------------------------------------------------


def test_claim_then_duplicate(user):
    run = submit(user)
    claimed = claim(run)
    assert claimed is not None
    assert claimed.pk == run.pk
    assert claimed.status == RunStatus.RUNNING
    assert claimed.worker == "worker-1"
    assert claimed.code_version == "abc123"
    assert claimed.package_versions == {"numpy": "2.4.6"}
    assert claimed.started_at is not None
    assert claimed.heartbeat_at is not None
    assert history(run) == [(1, "", "queued", "submitted"), (1, "queued", "running", "claimed by worker-1")]

    # A duplicate delivery of the same message claims nothing and writes nothing.
    assert claim(run, worker="worker-2") is None
    run.refresh_from_db()
    assert run.worker == "worker-1"
    assert len(history(run)) == 2


def test_claim_with_wrong_attempt(user):
    run = submit(user)
    assert claim(run, attempt=2) is None
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
    assert history(run) == [(1, "", "queued", "submitted")]


def test_claim_publishes_numbered_status_event(user):
    run = submit(user)
    claim(run)
    run.refresh_from_db()
    assert run.event_seq == 1


# run_report ---------------------------------------------------------------------------------------------


def test_report_wrong_attempt_is_not_owned(user):
    run = make_run(user, status=RunStatus.RUNNING, attempt=2)
    time = timezone.now()
    outcome = services.run_report(
        run_id=run.pk, attempt=1,
        report=RunReport(progress=0.5, metrics=[("loss", 1, 0.5, time)], log_lines=[(time, "info", "hello")]),
    )
    assert outcome.owned is False
    assert outcome.events == []
    assert not Metric.objects.exists()
    assert not LogLine.objects.exists()
    run.refresh_from_db()
    assert run.progress == 0.0
    assert run.heartbeat_at is None


def test_report_on_a_finished_run_is_not_owned(user):
    run = make_run(user, status=RunStatus.CANCELLED)
    assert services.run_report(run_id=run.pk, attempt=1, report=RunReport(progress=0.1)).owned is False


def test_report_writes_batch_and_upserts_metrics(user):
    run = make_run(user, status=RunStatus.RUNNING)
    first_time = timezone.now()
    outcome = services.run_report(
        run_id=run.pk, attempt=1,
        report=RunReport(
            progress=0.25, progress_message="epoch 1/4", current_step=1,
            metrics=[("loss", 1, 0.9, first_time), ("accuracy", 1, 0.4, first_time)],
            log_lines=[(first_time, "info", "epoch 1 done")],
        ),
    )
    assert outcome.owned is True
    assert outcome.cancel_requested is False
    assert [event["type"] for event in outcome.events] == ["progress", "metrics", "log"]
    assert [event["seq"] for event in outcome.events] == [1, 2, 3]
    assert outcome.events[0] == {"type": "progress", "progress": 0.25, "message": "epoch 1/4", "seq": 1}
    assert outcome.events[1]["metrics"] == {
        "loss": [{"step": 1, "value": 0.9, "time": first_time.isoformat()}],
        "accuracy": [{"step": 1, "value": 0.4, "time": first_time.isoformat()}],
    }
    assert outcome.events[2] == {
        "type": "log", "level": "info", "message": "epoch 1 done", "time": first_time.isoformat(), "seq": 3,
    }

    # A resumed attempt repeats step 1: one row, the new value.
    second_time = first_time + timedelta(seconds=5)
    outcome = services.run_report(
        run_id=run.pk, attempt=1,
        report=RunReport(metrics=[("loss", 1, 0.7, second_time), ("loss", 2, 0.5, second_time)]),
    )
    assert [event["seq"] for event in outcome.events] == [4]
    assert sorted(Metric.objects.filter(run=run).values_list("key", "step", "value")) == [
        ("accuracy", 1, 0.4), ("loss", 1, 0.7), ("loss", 2, 0.5),
    ]
    assert Metric.objects.get(run=run, key="loss", step=1).time == second_time

    run.refresh_from_db()
    assert run.latest_metrics == {"loss": 0.5, "accuracy": 0.4}
    assert run.progress == 0.25
    assert run.progress_message == "epoch 1/4"
    assert run.current_step == 1
    assert run.heartbeat_at is not None
    assert run.event_seq == 4
    assert list(LogLine.objects.filter(run=run).values_list("attempt", "level", "message")) == [(1, "info", "epoch 1 done")]


def test_report_repeated_key_step_within_one_batch(user):
    run = make_run(user, status=RunStatus.RUNNING)
    time = timezone.now()
    services.run_report(
        run_id=run.pk, attempt=1, report=RunReport(metrics=[("loss", 3, 1.0, time), ("loss", 3, 0.25, time)])
    )
    assert list(Metric.objects.filter(run=run).values_list("key", "step", "value")) == [("loss", 3, 0.25)]
    run.refresh_from_db()
    assert run.latest_metrics == {"loss": 0.25}


def test_report_clamps_progress(user):
    run = make_run(user, status=RunStatus.RUNNING)
    services.run_report(run_id=run.pk, attempt=1, report=RunReport(progress=1.7))
    run.refresh_from_db()
    assert run.progress == 1.0


def test_report_surfaces_cancel_request(user):
    run = make_run(user, status=RunStatus.RUNNING)
    services.run_cancel(run=run)
    outcome = services.run_report(run_id=run.pk, attempt=1, report=RunReport())
    assert outcome.owned is True
    assert outcome.cancel_requested is True


# run_cancel -----------------------------------------------------------------------------------------------


def test_cancel_queued_run_stops_at_once(user):
    run = submit(user)
    cancelled = services.run_cancel(run=run)
    assert cancelled.status == RunStatus.CANCELLED
    assert cancelled.cancel_requested is True
    assert cancelled.finished_at is not None
    assert history(run)[-1] == (1, "queued", "cancelled", "cancelled before it started")
    # Its message, when it arrives, claims nothing.
    assert claim(run) is None


def test_cancel_running_run_sets_the_flag(user):
    run = submit(user)
    claim(run)
    run.refresh_from_db()
    cancelled = services.run_cancel(run=run)
    assert cancelled.status == RunStatus.RUNNING
    assert cancelled.cancel_requested is True
    assert history(run)[-1][2] == "running"


def test_cancel_acts_on_the_current_status_not_a_stale_copy(user):
    """The run was read as queued, then a worker claimed it: the cancel must still reach the worker."""
    run = submit(user)
    stale = Run.objects.get(pk=run.pk)
    claim(run)
    cancelled = services.run_cancel(run=stale)
    assert cancelled.status == RunStatus.RUNNING
    assert cancelled.cancel_requested is True
    assert services.run_report(run_id=run.pk, attempt=1, report=RunReport()).cancel_requested is True


def test_cancel_of_a_requeued_run_read_before_the_requeue(user):
    run = submit(user)
    claim(run)
    stale = Run.objects.get(pk=run.pk)
    services.run_requeue(run_id=run.pk, attempt=1, reason="worker lost")
    cancelled = services.run_cancel(run=stale)
    assert (cancelled.status, cancelled.attempt) == (RunStatus.CANCELLED, 2)
    assert history(run)[-1] == (2, "queued", "cancelled", "cancelled before it started")


def test_cancel_of_a_run_that_finished_meanwhile_is_a_conflict(user):
    run = submit(user)
    stale = Run.objects.get(pk=run.pk)
    claim(run)
    services.run_finish(run_id=run.pk, attempt=1, status=RunStatus.FAILED, error="boom")
    with pytest.raises(ApiError) as raised:
        services.run_cancel(run=stale)
    assert raised.value.status_code == 409
    assert raised.value.message == f"Run {run.pk} already failed."


@pytest.mark.parametrize("status", [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED])
def test_cancel_finished_run_is_a_conflict(user, status):
    run = make_run(user, status=status)
    with pytest.raises(ApiError) as raised:
        services.run_cancel(run=run)
    assert raised.value.status_code == 409
    assert raised.value.message == f"Run {run.pk} already {status}."


# run_requeue ----------------------------------------------------------------------------------------------


def test_requeue_fences_the_old_attempt(user, django_capture_on_commit_callbacks, sent_tasks):
    run = submit(user)
    claim(run)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.run_requeue(run_id=run.pk, attempt=1, reason="worker lost") is True
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
    assert run.attempt == 2
    assert run.worker == ""
    assert run.heartbeat_at is None
    assert history(run)[-1] == (2, "running", "queued", "worker lost")
    assert sent_tasks == [(TRAIN_TASK, [run.pk, 2], {"queue": "training"})]

    # The old attempt can no longer report, claim, re-queue or finish.
    assert services.run_report(run_id=run.pk, attempt=1, report=RunReport(progress=0.9)).owned is False
    assert claim(run, attempt=1) is None
    assert services.run_requeue(run_id=run.pk, attempt=1, reason="again") is False
    assert services.run_finish(run_id=run.pk, attempt=1, status=RunStatus.FAILED, error="late") is False
    run.refresh_from_db()
    assert (run.status, run.attempt, run.progress, run.error) == (RunStatus.QUEUED, 2, 0.0, "")

    # The new one can.
    assert claim(run, attempt=2, worker="worker-2").worker == "worker-2"


def test_requeue_of_a_queued_run_does_nothing(user):
    run = submit(user)
    assert services.run_requeue(run_id=run.pk, attempt=1, reason="?") is False
    run.refresh_from_db()
    assert run.attempt == 1


# run_succeed ------------------------------------------------------------------------------------------------


def succeed(run: Run, *, accuracy: float = 0.9) -> ModelVersion:
    claim(run)
    run.refresh_from_db()
    artifact = make_artifact(run, name="model.zip", content=b"model bytes", kind=Artifact.Kind.MODEL)
    assert services.run_succeed(
        run_id=run.pk, attempt=run.attempt, model_artifact_id=artifact.pk, metrics={"test_accuracy": accuracy}
    ) is True
    return ModelVersion.objects.get(run=run)


def test_succeed_registers_versions_per_owner_and_name(user, other_user):
    first = submit(user)
    model = succeed(first)
    first.refresh_from_db()
    assert first.status == RunStatus.SUCCEEDED
    assert first.progress == 1.0
    assert first.finished_at is not None
    assert history(first)[-1] == (1, "running", "succeeded", "training finished")
    assert (model.owner, model.name, model.version, model.pipeline) == (user, "traffic_signs", 1, "traffic_signs")
    assert model.source == ModelVersion.Source.RUN
    assert model.storage_path == f"runs/{first.pk}/model.zip"
    assert model.metrics == {"test_accuracy": 0.9}
    assert model.visibility == ModelVersion.Visibility.PRIVATE

    assert succeed(submit(user), accuracy=0.95).version == 2
    assert succeed(submit(user, experiment="other-name")).version == 1
    theirs = succeed(submit(other_user))
    assert (theirs.owner, theirs.name, theirs.version) == (other_user, "traffic_signs", 1)


def test_succeed_without_a_model(user):
    run = submit(user)
    claim(run)
    assert services.run_succeed(run_id=run.pk, attempt=1, model_artifact_id=None, metrics={}) is True
    assert not ModelVersion.objects.exists()


def test_succeed_of_a_run_not_running_registers_nothing(user):
    run = make_run(user, status=RunStatus.CANCELLED)
    artifact = make_artifact(run, name="model.zip", content=b"x", kind=Artifact.Kind.MODEL)
    assert services.run_succeed(run_id=run.pk, attempt=1, model_artifact_id=artifact.pk, metrics={}) is False
    assert not ModelVersion.objects.exists()
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED


# run_delete --------------------------------------------------------------------------------------------------


def test_delete_removes_rows_and_artifact_files(user, django_capture_on_commit_callbacks):
    run = make_run(user, status=RunStatus.SUCCEEDED)
    kept = make_run(user, status=RunStatus.SUCCEEDED)
    artifacts = [
        make_artifact(run, name="report.json", content=b"{}"),
        make_artifact(run, name="model.zip", content=b"model", kind=Artifact.Kind.MODEL),
    ]
    other = make_artifact(kept, name="report.json", content=b"{}")
    Metric.objects.create(run=run, key="loss", step=1, value=0.5, time=timezone.now())
    assert all(default_storage.exists(a.storage_path) for a in artifacts)

    with django_capture_on_commit_callbacks(execute=True):
        services.run_delete(run=run)

    assert not Run.objects.filter(pk=run.pk).exists()
    assert not Artifact.objects.filter(run_id=run.pk).exists()
    assert not Metric.objects.exists()
    assert not any(default_storage.exists(a.storage_path) for a in artifacts)
    assert default_storage.exists(other.storage_path)


@pytest.mark.parametrize("status", [RunStatus.QUEUED, RunStatus.RUNNING])
def test_delete_unfinished_run_is_a_conflict(user, status):
    run = make_run(user, status=status)
    artifact = make_artifact(run, name="report.json", content=b"{}")
    with pytest.raises(ApiError) as raised:
        services.run_delete(run=run)
    assert raised.value.status_code == 409
    assert Run.objects.filter(pk=run.pk).exists()
    assert default_storage.exists(artifact.storage_path)
