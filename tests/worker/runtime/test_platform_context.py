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
