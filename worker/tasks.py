"""Celery tasks: thin wrappers that take ids and call one function each."""

from __future__ import annotations

from celery import shared_task

import worker.runtime.heartbeat  # noqa: F401  (connects the worker's signal handlers)


@shared_task(name="worker.tasks.run_train")
def run_train(run_id: int, attempt: int) -> str:
    from worker.runtime.runner import run_execute

    return run_execute(run_id=run_id, attempt=attempt)


@shared_task(name="worker.tasks.predict")
def predict(request_key: str) -> None:
    from worker.runtime.inference import answer_request

    answer_request(request_key)


@shared_task(name="worker.tasks.prediction_execute")
def prediction_execute(prediction_id: int) -> None:
    from worker.runtime.inference import prediction_execute as execute

    execute(prediction_id)


@shared_task(name="worker.tasks.dataset_validate")
def dataset_validate(dataset_id: int) -> str:
    from worker.runtime.datasets import dataset_validate as validate

    return validate(dataset_id)


@shared_task(name="worker.tasks.runs_reap")
def runs_reap() -> str:
    from worker.runtime.reaper import runs_reap as reap

    return reap()
