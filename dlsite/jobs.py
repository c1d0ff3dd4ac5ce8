"""Enqueue Celery tasks by name, after the current transaction commits.

Services call this instead of importing worker code, so the web process never loads the runner or
TensorFlow, and a task never sees a row that was rolled back or is not yet visible.
"""

from django.db import transaction


def enqueue(task_name: str, *args, queue: str | None = None) -> None:
    from dlsite.celery import app

    options = {"queue": queue} if queue else {}
    transaction.on_commit(lambda: app.send_task(task_name, args=list(args), **options))
