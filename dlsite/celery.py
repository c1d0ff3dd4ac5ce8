"""The Celery app: queues, routing and the settings that keep runs safe.

Tasks take ids and are sent by name (`send_task`), so the web process never imports the worker's code.
Training acks early: a run's claim in the database (conditional on run and attempt) is the guard
against double execution, and the reaper re-queues a run whose worker died, so a lost message costs
nothing and a redelivered one does nothing.
"""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dlsite.settings")

app = Celery("dlsite")
app.config_from_object("django.conf:settings", namespace="CELERY")

TASK_QUEUES = {
    "worker.tasks.run_train": "training",
    "worker.tasks.predict": "inference",
    "worker.tasks.prediction_execute": "batch",
    "worker.tasks.dataset_validate": "default",
    "worker.tasks.runs_reap": "default",
}

app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # settings.QUEUES, named again: this module is imported while the settings module loads.
    task_queues=[Queue(name) for name in ("training", "training-multi", "inference", "batch", "default")],
    task_default_queue="default",
    task_routes={name: {"queue": queue} for name, queue in TASK_QUEUES.items()},
    task_ignore_result=True,  # the database is the source of truth, not a result backend
    task_acks_late=False,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    # Above any task's run time, so Redis never re-delivers a message still being worked on.
    broker_transport_options={"visibility_timeout": 7 * 24 * 3600},
    task_time_limit=None,
    imports=("worker.tasks",),
    beat_schedule={
        "runs-reap": {
            "task": "worker.tasks.runs_reap",
            "schedule": float(os.environ.get("DLSITE_REAPER_INTERVAL", 30)),
        }
    },
)
