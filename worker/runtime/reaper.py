"""The reaper (run by beat): no run stays queued or running forever.

- A running run whose heartbeat stopped (its worker died, was preempted or lost the network) is
  queued again as the next attempt, which resumes from the newest checkpoint; after the last allowed
  attempt it fails with a reason the user can read.
- A queued run whose task message is no longer in the broker (Redis restarted without persistence)
  is sent again. A message that is merely waiting its turn is left alone; a duplicate would be
  harmless anyway, because claiming is conditional on (run, attempt).
- Heartbeat rows of workers that stopped beating are removed.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.experiments import services
from apps.experiments.models import Run, RunStatus, WorkerHeartbeat
from worker.runtime.broker import pending_train_messages

WORKER_FORGOTTEN_AFTER = 3600  # seconds without a heartbeat before a worker's row goes


def runs_reap() -> str:
    now = timezone.now()
    requeued, failed = _reap_lost_runs(now)
    resent = _resend_lost_messages(now)
    WorkerHeartbeat.objects.filter(last_seen__lt=now - timedelta(seconds=WORKER_FORGOTTEN_AFTER)).delete()
    return f"reaped: {requeued} re-queued, {failed} failed, {resent} re-sent"


def _reap_lost_runs(now) -> tuple[int, int]:
    silent_since = now - timedelta(seconds=settings.RUN_HEARTBEAT_TIMEOUT)
    # External runs are logged to by scripts outside the platform: no worker, no heartbeat to miss.
    lost = Run.objects.filter(
        status=RunStatus.RUNNING, external=False, heartbeat_at__lt=silent_since
    ).values_list("pk", "attempt")
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
    return requeued, failed


def _resend_lost_messages(now) -> int:
    waiting = list(Run.objects.filter(
        status=RunStatus.QUEUED, external=False, enqueued_at__lt=now - timedelta(seconds=settings.RUN_RESEND_AFTER)
    ))
    if not waiting:
        return 0
    in_broker = pending_train_messages(sorted({run.queue for run in waiting}))
    resent = 0
    for run in waiting:
        if in_broker is not None and (run.pk, run.attempt) in in_broker:
            continue
        with transaction.atomic():
            services.run_enqueue(run=run)
        resent += 1
    return resent
