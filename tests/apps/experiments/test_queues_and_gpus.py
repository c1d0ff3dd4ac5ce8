"""Where a submitted run goes: its queue (one of settings.QUEUES) and its GPU count (runs asking for more
than one go to the workers that see several GPUs, unless a queue is named)."""

from __future__ import annotations

import pytest
from django.conf import settings

from apps.experiments.models import Run
from tests.apps.test_api import assert_error_shape

pytestmark = pytest.mark.django_db

TRAIN_TASK = "worker.tasks.run_train"


def submit(api, **payload):
    return api.post("/api/v1/runs/", {"pipeline": "traffic_signs", **payload}, format="json")


def test_the_configured_queues():
    assert settings.QUEUES == ("training", "training-multi", "inference", "batch", "default")


@pytest.mark.parametrize(
    "payload, queue, gpus",
    [
        ({}, "training", 0),
        ({"gpus": 1}, "training", 1),
        ({"gpus": 2}, "training-multi", 2),
        ({"gpus": 8}, "training-multi", 8),
        ({"gpus": 4, "queue": "training"}, "training", 4),  # a named queue wins
        ({"queue": "batch"}, "batch", 0),
        ({"queue": "training-multi", "gpus": 0}, "training-multi", 0),
        ({"queue": None, "gpus": 3}, "training-multi", 3),
    ],
)
def test_queue_and_gpus(api, payload, queue, gpus, sent_tasks, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = submit(api, **payload)

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["queue"], body["gpus"], body["external"]) == (queue, gpus, False)
    run = Run.objects.get(pk=body["id"])
    assert (run.queue, run.gpus) == (queue, gpus)
    assert sent_tasks == [(TRAIN_TASK, [run.pk, 1], {"queue": queue})]


@pytest.mark.parametrize("queue", settings.QUEUES)
def test_every_configured_queue_is_accepted(api, queue, sent_tasks, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = submit(api, queue=queue)
    assert response.status_code == 201, response.content
    assert sent_tasks == [(TRAIN_TASK, [response.json()["id"], 1], {"queue": queue})]


@pytest.mark.parametrize(
    "payload, errors",
    [
        ({"queue": "gpu"}, {"queue": ["Expected one of ['training', 'training-multi', 'inference', 'batch', 'default']."]}),
        ({"queue": ""}, {"queue": ["This field may not be blank."]}),
        ({"gpus": 9}, {"gpus": ["Expected an integer from 0 to 8."]}),
        ({"gpus": -1}, {"gpus": ["Expected an integer from 0 to 8."]}),
        ({"gpus": "two"}, {"gpus": ["A valid integer is required."]}),
        ({"gpus": 1.5}, {"gpus": ["A valid integer is required."]}),
        ({"gpus": None}, {"gpus": ["This field may not be null."]}),
    ],
)
def test_bad_queue_or_gpus(api, payload, errors, sent_tasks):
    response = submit(api, **payload)
    assert assert_error_shape(response, 400, *errors)["errors"] == errors
    assert not Run.objects.exists()
    assert sent_tasks == []


def test_the_gpu_limit_is_a_setting(api, settings):
    settings.MAX_GPUS_PER_RUN = 2
    assert submit(api, gpus=2).status_code == 201
    response = submit(api, gpus=3)
    assert assert_error_shape(response, 400, "gpus")["errors"] == {"gpus": ["Expected an integer from 0 to 2."]}


def test_the_submit_command_takes_gpus_and_queue(user, sent_tasks, django_capture_on_commit_callbacks):
    from io import StringIO

    from django.core.management import call_command

    with django_capture_on_commit_callbacks(execute=True):
        call_command("submit", "traffic_signs", "--user", "alice", "--gpus", "2", "--no-follow", stdout=StringIO())
        call_command("submit", "traffic_signs", "--user", "alice", "--queue", "batch", "--no-follow", stdout=StringIO())

    assert list(Run.objects.order_by("id").values_list("queue", "gpus")) == [("training-multi", 2), ("batch", 0)]
    assert [options["queue"] for _, _, options in sent_tasks] == ["training-multi", "batch"]


def test_celery_declares_the_configured_queues():
    from dlsite.celery import app

    assert [queue.name for queue in app.conf.task_queues] == list(settings.QUEUES)
