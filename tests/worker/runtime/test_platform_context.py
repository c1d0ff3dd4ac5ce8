"""The platform RunContext's flusher against the real database: what reaches the tables."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.experiments.models import LogLine, Metric, Run, RunStatus
from apps.experiments.services import run_submit
from worker.runtime.platform import PlatformRunContext

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def running_run(user, monkeypatch):
    monkeypatch.setattr("apps.experiments.services.enqueue", lambda *args, **kwargs: None)
    run = run_submit(user=user, pipeline="traffic_signs", params={"epochs": 2})
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, heartbeat_at=timezone.now())
    return run


def test_non_finite_metrics_become_log_lines_and_the_rest_is_written(running_run, tmp_path):
    ctx = PlatformRunContext(run_id=running_run.pk, attempt=1, seed=0, work_dir=tmp_path / "run", cache_dir=tmp_path / "cache")
    ctx.log_metrics(1, loss=float("nan"), accuracy=0.5)
    ctx.log_metrics(2, loss=float("inf"), accuracy=0.75)
    ctx.close()

    assert list(Metric.objects.filter(run=running_run).values_list("key", "step", "value")) == [
        ("accuracy", 1, 0.5), ("accuracy", 2, 0.75),
    ]
    warnings = list(LogLine.objects.filter(run=running_run, level="warning").values_list("message", flat=True))
    assert warnings == ["loss is nan at step 1: not recorded as a metric", "loss is inf at step 2: not recorded as a metric"]
    assert Run.objects.get(pk=running_run.pk).latest_metrics == {"accuracy": 0.75}


def test_a_superseded_attempt_stops_and_writes_nothing(running_run, tmp_path):
    Run.objects.filter(pk=running_run.pk).update(attempt=2)  # the reaper gave the run to a new attempt
    ctx = PlatformRunContext(run_id=running_run.pk, attempt=1, seed=0, work_dir=tmp_path / "run", cache_dir=tmp_path / "cache")
    ctx.log_metrics(1, loss=1.0)
    ctx.close()
    assert ctx.should_stop() and ctx.lost_ownership
    assert not Metric.objects.filter(run=running_run).exists()


def test_a_checkpoint_is_recorded_after_the_metrics_of_every_step_it_may_hold(running_run, tmp_path, monkeypatch):
    """The folder is zipped a moment after the checkpoint is marked, and the pipeline may have moved on
    (the zip holds step 4, marked 3): step 4's metrics must be in the database before the checkpoint,
    or a run resumed from it would never record them."""
    import threading

    from worker.runtime import platform

    zipping, moved_on = threading.Event(), threading.Event()
    recorded_at_registration = []

    def zip_later(path, storage_path):
        zipping.set()
        assert moved_on.wait(10)
        return storage_path, 1, "0" * 64

    def register(**artifact):
        recorded_at_registration.append(sorted(Metric.objects.filter(run=running_run).values_list("step", flat=True)))

    monkeypatch.setattr(platform, "upload_folder_zip", zip_later)
    monkeypatch.setattr(platform.services, "artifact_register", register)
    monkeypatch.setattr(platform.services, "checkpoints_prune", lambda **kwargs: None)
    ctx = PlatformRunContext(run_id=running_run.pk, attempt=1, seed=0, work_dir=tmp_path / "run", cache_dir=tmp_path / "cache")
    for step in (1, 2, 3):
        ctx.log_metrics(step, loss=1.0 / step)
    ctx.save_checkpoint(3)
    assert zipping.wait(10)
    ctx.log_metrics(4, loss=0.25)  # then the pipeline writes step 4's checkpoint files into the folder
    moved_on.set()
    ctx.close()

    assert recorded_at_registration == [[1, 2, 3, 4]]
