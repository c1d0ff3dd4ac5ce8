"""Worker heartbeats and per-process set-up, hooked to Celery's signals.

The worker's main process beats a row every few seconds (the health endpoint reads them, not broadcast
pings). Each child process caps its threads, and imports TensorFlow after the fork when asked to, so
the first run or prediction does not pay for it.
"""

from __future__ import annotations

import logging
import os
import threading

from celery.signals import worker_process_init, worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

logger = logging.getLogger(__name__)

_stop = threading.Event()


def _beat(hostname: str, queues: list[str]) -> None:
    from apps.experiments.models import WorkerHeartbeat

    started = timezone.now()
    while not _stop.is_set():
        try:
            close_old_connections()
            WorkerHeartbeat.objects.update_or_create(
                hostname=hostname,
                defaults={"queues": queues, "pid": os.getpid(), "started_at": started, "last_seen": timezone.now()},
            )
        except Exception:
            logger.warning("worker heartbeat failed", exc_info=True)
        _stop.wait(settings.WORKER_HEARTBEAT_INTERVAL)


@worker_ready.connect
def start_heartbeat(sender, **kwargs):
    queues = sorted(queue.name for queue in sender.app.amqp.queues.consume_from.values())
    threading.Thread(target=_beat, args=(sender.hostname, queues), name="worker-heartbeat", daemon=True).start()


@worker_shutdown.connect
def stop_heartbeat(sender, **kwargs):
    from apps.experiments.models import WorkerHeartbeat

    _stop.set()
    try:
        WorkerHeartbeat.objects.filter(hostname=sender.hostname).delete()
    except Exception:
        logger.warning("could not remove the heartbeat of %s", sender.hostname, exc_info=True)


@worker_process_init.connect
def prepare_child(**kwargs):
    """In each prefork child, after the fork: thread caps, then TensorFlow if this worker uses it."""
    # TF's grappler logs a harmless error line per run for leaky-ReLU fusion; warnings stay visible.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    threads = os.environ.get("DLSITE_WORKER_THREADS")
    if threads:
        for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
            os.environ.setdefault(name, threads)
    if os.environ.get("DLSITE_PRELOAD_TENSORFLOW", "1") == "1" and os.environ.get("DLSITE_WORKER_KIND") in (
        "training", "inference",
    ):
        import tensorflow  # noqa: F401  (warm: the first task does not pay the import)
