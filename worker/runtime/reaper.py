"""The reaper (run by beat): no run stays `running` after its worker died.

A running run whose heartbeat stopped is queued again as the next attempt, which resumes from the
newest checkpoint; after the last allowed attempt it fails with a reason the user can read.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from apps.experiments import services
from apps.experiments.models import Run, RunStatus


def runs_reap() -> str:
    silent_since = timezone.now() - timedelta(seconds=settings.RUN_HEARTBEAT_TIMEOUT)
    lost = Run.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=silent_since).values_list("pk", "attempt")
    requeued = failed = 0
    for run_id, attempt in list(lost):
        if attempt < settings.RUN_MAX_ATTEMPTS:
            requeued += services.run_requeue(
                run_id=run_id, attempt=attempt,
                reason=f"no heartbeat for {settings.RUN_HEARTBEAT_TIMEOUT:g} s: the worker was lost; resuming",
            )
        else:
            failed += services.run_finish(
                run_id=run_id, attempt=attempt, status=RunStatus.FAILED,
                reason=f"the worker was lost {attempt} times; giving up",
                error=f"Worker lost: no heartbeat for {settings.RUN_HEARTBEAT_TIMEOUT:g} s, {attempt} attempts.",
            )
    return f"reaped: {requeued} re-queued, {failed} failed"
