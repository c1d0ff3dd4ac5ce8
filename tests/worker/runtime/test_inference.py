"""Fast predictions on a worker: the pending list is answered in batches, one predictor call per model
and batch; a bad input is answered 400 on its own; requests whose view gave up are skipped; the task
lingers for more, and ends its lease only when nothing is pending. Real Redis, a stand-in predictor."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from apps.registry.inference import LEASE_SUFFIX, REPLY_KEY, encode_request
from worker.runtime import inference


class LengthPredictor:
    """Answers the length of the `file` input; refuses b"bad" as the image predictor refuses a PDF."""

    def __init__(self):
        self.batch_sizes: list[int] = []

    def predict(self, inputs):
        return self.predict_batch([inputs])[0]

    def predict_batch(self, batch):
        self.batch_sizes.append(len(batch))
        if any(inputs.files["file"] == b"bad" for inputs in batch):
            raise ValueError("file: not an image Pillow can read")
        return [{"length": len(inputs.files["file"])} for inputs in batch]


@pytest.fixture
def predictors(monkeypatch) -> dict[int, LengthPredictor]:
    """The stand-in predictor of each model id, as the worker's cache hands them out."""
    by_model: dict[int, LengthPredictor] = {}

    class Cache:
        def get(self, model):
            return by_model.setdefault(model["id"], LengthPredictor())

    monkeypatch.setattr(inference, "predictor_cache", lambda: Cache())
    return by_model


@pytest.fixture
def pending(settings):
    """A pending list of this test's own (the Redis may be shared), served without lingering."""
    settings.PREDICT_LINGER = 0
    key = f"dlsite-test:predict:{uuid.uuid4().hex}"
    yield key
    inference.redis_client().delete(key, key + LEASE_SUFFIX, key + ":helped")


@pytest.fixture
def sent_tasks(monkeypatch):
    from dlsite.celery import app

    sent = []
    monkeypatch.setattr(app, "send_task", lambda name, args=None, **options: sent.append((name, args)))
    return sent


def push(pending_key: str, content: bytes, *, model_id: int = 1, deadline_in: float = 30) -> str:
    key = uuid.uuid4().hex
    model = {"id": model_id, "pipeline": "traffic_signs", "storage_path": f"models/{model_id}.zip", "sha256": str(model_id)}
    request = encode_request(key=key, model=model, files={"file": content}, data={}, deadline=time.time() + deadline_in)
    inference.redis_client().rpush(pending_key, request)
    return key


def reply(key: str) -> dict | None:
    value = inference.redis_client().lpop(REPLY_KEY.format(key))
    return json.loads(value) if value is not None else None


def test_pending_requests_are_answered_in_one_call_per_model(pending, predictors):
    first = [push(pending, b"x" * length) for length in (1, 2, 3)]
    second = [push(pending, b"y" * length, model_id=2) for length in (4, 5)]

    assert inference.serve_pending(pending) == 5

    assert predictors[1].batch_sizes == [3] and predictors[2].batch_sizes == [2]
    assert [reply(key) for key in first + second] == [
        {"status": 200, "body": {"length": length}} for length in (1, 2, 3, 4, 5)
    ]


def test_a_bad_input_is_answered_400_and_the_rest_of_its_batch_200(pending, predictors):
    keys = [push(pending, content) for content in (b"good", b"bad", b"better")]

    assert inference.serve_pending(pending) == 3

    assert [reply(key) for key in keys] == [
        {"status": 200, "body": {"length": 4}},
        {"status": 400, "message": "file: not an image Pillow can read"},
        {"status": 200, "body": {"length": 6}},
    ]
    assert predictors[1].batch_sizes == [3, 1, 1, 1]  # the refused batch, then each input alone


def test_a_request_whose_view_gave_up_is_skipped(pending, predictors):
    late = push(pending, b"late", deadline_in=-1)

    assert inference.serve_pending(pending) == 0
    assert reply(late) is None and predictors == {}


def test_the_lease_ends_only_when_nothing_is_pending(pending, predictors):
    client = inference.redis_client()
    client.set(pending + LEASE_SUFFIX, "view", ex=10)
    release_if_idle = client.register_script(inference.RELEASE_IF_IDLE)
    push(pending, b"waiting")

    assert release_if_idle(keys=[pending, pending + LEASE_SUFFIX]) == 0
    assert client.exists(pending + LEASE_SUFFIX)

    assert inference.serve_pending(pending) == 1
    assert not client.exists(pending + LEASE_SUFFIX) and client.llen(pending) == 0


def test_the_task_lingers_for_requests_that_come_soon_after(pending, predictors, settings):
    settings.PREDICT_LINGER = 1.0
    first = push(pending, b"one")
    answered = []
    serving = threading.Thread(target=lambda: answered.append(inference.serve_pending(pending)))
    serving.start()
    time.sleep(0.3)
    second = push(pending, b"two")
    serving.join(timeout=10)

    assert answered == [2]
    assert reply(first)["body"] == {"length": 3} and reply(second)["body"] == {"length": 3}


def test_a_full_batch_asks_for_one_more_task(pending, predictors, settings, sent_tasks):
    settings.PREDICT_BATCH_SIZE = 2
    for content in (b"a", b"b", b"c", b"d", b"e"):
        push(pending, content)

    assert inference.serve_pending(pending) == 5

    assert predictors[1].batch_sizes == [2, 2, 1]
    assert sent_tasks == [("worker.tasks.predict", [pending])]  # two full batches, one second: one task


def test_a_long_serving_task_hands_over_to_a_new_one(pending, predictors, monkeypatch, sent_tasks):
    monkeypatch.setattr(inference, "SERVE_SECONDS_PER_TASK", 0)
    client = inference.redis_client()
    client.set(pending + LEASE_SUFFIX, "view", ex=10)
    first = push(pending, b"first")

    assert inference.serve_pending(pending) == 1

    assert reply(first) == {"status": 200, "body": {"length": 5}}
    assert sent_tasks == [("worker.tasks.predict", [pending])]
    assert client.exists(pending + LEASE_SUFFIX)  # held for the next task
