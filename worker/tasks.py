"""Celery tasks: thin wrappers that take ids and call one function each."""

from __future__ import annotations

from celery import shared_task

import worker.runtime.heartbeat  # noqa: F401  (connects the worker's signal handlers)


# Training has no time limit (runs last days); Redis's visibility timeout (a week) is above them all,
# and the database claim, not the broker, guards against a second execution.
@shared_task(name="worker.tasks.run_train")
def run_train(run_id: int, attempt: int) -> str:
    from worker.runtime.runner import run_execute

    return run_execute(run_id=run_id, attempt=attempt)


# Serves the pending fast predictions in batches while they keep coming; no time limit, as it hands
# over to a new task after a minute (worker.runtime.inference.SERVE_SECONDS_PER_TASK).
@shared_task(name="worker.tasks.predict")
def predict(pending_key: str) -> int:
    from worker.runtime.inference import serve_pending

    return serve_pending(pending_key)


@shared_task(name="worker.tasks.prediction_execute", soft_time_limit=6 * 3600, time_limit=6 * 3600 + 60)
def prediction_execute(prediction_id: int) -> None:
    from worker.runtime.inference import prediction_execute as execute

    execute(prediction_id)


@shared_task(name="worker.tasks.dataset_validate", soft_time_limit=2 * 3600, time_limit=2 * 3600 + 60)
def dataset_validate(dataset_id: int) -> str:
    from worker.runtime.datasets import dataset_validate as validate

    return validate(dataset_id)


@shared_task(name="worker.tasks.runs_reap", soft_time_limit=120, time_limit=180)
def runs_reap() -> str:
    from worker.runtime.reaper import runs_reap as reap

    return reap()
