"""Fast predictions on a worker: the pending list is answered in batches, one predictor call per model
and batch; a bad input is answered 400 on its own; requests whose view gave up are skipped; the task
lingers for more, and ends its lease only when nothing is pending. Streaming requests join their
model's stream between its steps. Real Redis, stand-in predictors."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from apps.registry.inference import KEY_LENGTH, LEASE_SUFFIX, encode_request
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
    inference.redis_client().delete(key, key + LEASE_SUFFIX, key + ":helped", inbox(key))


def inbox(pending_key: str) -> str:
    """The inbox of the requests a test pushes onto `pending_key`, as a web process's."""
    return pending_key + ":inbox"


@pytest.fixture
def sent_tasks(monkeypatch):
    from dlsite.celery import app

    sent = []
    monkeypatch.setattr(app, "send_task", lambda name, args=None, **options: sent.append((name, args)))
    return sent


def push(pending_key: str, content: bytes, *, model_id: int = 1, deadline_in: float = 30) -> str:
    key = uuid.uuid4().hex
    model = {"id": model_id, "pipeline": "traffic_signs", "storage_path": f"models/{model_id}.zip", "sha256": str(model_id)}
    request = encode_request(
        key=key, reply_to=inbox(pending_key), model=model, files={"file": content}, data={}, deadline=time.time() + deadline_in
    )
    inference.redis_client().rpush(pending_key, request)
    return key


def messages(pending_key: str, key: str) -> list[dict]:
    """The messages the worker sent for request `key`, in order."""
    sent = inference.redis_client().lrange(inbox(pending_key), 0, -1)
    return [json.loads(message[KEY_LENGTH:]) for message in sent if message[:KEY_LENGTH].decode() == key]


def reply(pending_key: str, key: str) -> dict | None:
    """The one message a request got (None if none)."""
    sent = messages(pending_key, key)
    assert len(sent) <= 1
    return sent[0] if sent else None


def test_pending_requests_are_answered_in_one_call_per_model(pending, predictors):
    first = [push(pending, b"x" * length) for length in (1, 2, 3)]
    second = [push(pending, b"y" * length, model_id=2) for length in (4, 5)]

    assert inference.serve_pending(pending) == 5

    assert predictors[1].batch_sizes == [3] and predictors[2].batch_sizes == [2]
    assert [reply(pending, key) for key in first + second] == [
        {"status": 200, "body": {"length": length}} for length in (1, 2, 3, 4, 5)
    ]


def test_a_bad_input_is_answered_400_and_the_rest_of_its_batch_200(pending, predictors):
    keys = [push(pending, content) for content in (b"good", b"bad", b"better")]

    assert inference.serve_pending(pending) == 3

    assert [reply(pending, key) for key in keys] == [
        {"status": 200, "body": {"length": 4}},
        {"status": 400, "message": "file: not an image Pillow can read"},
        {"status": 200, "body": {"length": 6}},
    ]
    assert predictors[1].batch_sizes == [3, 1, 1, 1]  # the refused batch, then each input alone


def test_a_request_whose_view_gave_up_is_skipped(pending, predictors):
    late = push(pending, b"late", deadline_in=-1)

    assert inference.serve_pending(pending) == 0
    assert reply(pending, late) is None and predictors == {}


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
    assert reply(pending, first)["body"] == {"length": 3} and reply(pending, second)["body"] == {"length": 3}


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

    assert reply(pending, first) == {"status": 200, "body": {"length": 5}}
    assert sent_tasks == [("worker.tasks.predict", [pending])]
    assert client.exists(pending + LEASE_SUFFIX)  # held for the next task


class SpellingStream:
    """Spells each request's `word` a letter a step; records the step each request joined at."""

    def __init__(self, on_step=None):
        self.words: dict[str, list[str]] = {}
        self.steps = 0
        self.joined_at: dict[str, int] = {}
        self.on_step = on_step

    def __len__(self):
        return len(self.words)

    def add(self, key, inputs):
        word = inputs.data.get("word")
        if not word:
            raise ValueError("word: required")
        self.words[key] = [word, ""]
        self.joined_at[key] = self.steps

    def step(self):
        self.steps += 1
        if self.on_step:
            self.on_step(self.steps)
        pieces, finished = {}, {}
        for key, (word, spelt) in list(self.words.items()):
            pieces[key] = word[len(spelt)]
            self.words[key][1] = spelt = spelt + pieces[key]
            if spelt == word:
                finished[key] = {"out": word}
                del self.words[key]
        return pieces, finished


def push_stream(pending_key: str, word: str) -> str:
    key = uuid.uuid4().hex
    model = {"id": 7, "pipeline": "chatbot", "storage_path": "models/7.zip", "sha256": "7"}
    request = encode_request(
        key=key, reply_to=inbox(pending_key), model=model, files={}, data={"word": word}, deadline=time.time() + 30, stream=True
    )
    inference.redis_client().rpush(pending_key, request)
    return key


def stream_with(monkeypatch, stream) -> None:
    """Models' predictors stream with `stream`, as the chatbot's with its ReplyStream."""

    class StreamingPredictor:
        def open_stream(self):
            return stream

    class Cache:
        def get(self, model):
            return StreamingPredictor()

    monkeypatch.setattr(inference, "predictor_cache", lambda: Cache())


def test_streaming_requests_join_the_replies_being_decoded_between_steps(pending, monkeypatch):
    late: list[str] = []
    stream = SpellingStream(on_step=lambda step: late.append(push_stream(pending, "no")) if step == 2 else None)
    stream_with(monkeypatch, stream)
    first = push_stream(pending, "hello")
    refused = push_stream(pending, "")

    assert inference.serve_pending(pending) == 3

    assert {reply_to.key: step for reply_to, step in stream.joined_at.items()} == {first: 0, late[0]: 2}
    assert stream.steps == 5  # "no" was spelt beside "hello", not after it
    assert messages(pending, first) == [{"token": letter} for letter in "hello"] + [{"status": 200, "body": {"out": "hello"}}]
    assert messages(pending, late[0]) == [{"token": "n"}, {"token": "o"}, {"status": 200, "body": {"out": "no"}}]
    assert messages(pending, refused) == [{"status": 400, "message": "word: required"}]


def test_a_streaming_request_to_a_predictor_that_cannot_stream_is_answered_whole(pending, predictors):
    key = uuid.uuid4().hex
    model = {"id": 1, "pipeline": "traffic_signs", "storage_path": "models/1.zip", "sha256": "1"}
    request = encode_request(
        key=key, reply_to=inbox(pending), model=model, files={"file": b"abc"}, data={}, deadline=time.time() + 30, stream=True
    )
    inference.redis_client().rpush(pending, request)

    assert inference.serve_pending(pending) == 1
    assert messages(pending, key) == [{"status": 200, "body": {"length": 3}}]


def test_a_stream_that_fails_fails_each_of_its_requests(pending, monkeypatch):
    class BrokenStream(SpellingStream):
        def step(self):
            raise RuntimeError("out of memory")

    stream_with(monkeypatch, BrokenStream())
    keys = [push_stream(pending, word) for word in ("a", "b")]

    assert inference.serve_pending(pending) == 2
    assert [messages(pending, key) for key in keys] == [[{"status": 500, "message": "Prediction failed: RuntimeError."}]] * 2


def test_a_task_handing_over_finishes_its_streams_and_leaves_new_requests_to_the_next(pending, monkeypatch, sent_tasks):
    monkeypatch.setattr(inference, "SERVE_SECONDS_PER_TASK", 0)
    late: list[str] = []
    stream = SpellingStream(on_step=lambda step: late.append(push_stream(pending, "no")) if step == 1 else None)
    stream_with(monkeypatch, stream)
    first = push_stream(pending, "hello")

    assert inference.serve_pending(pending) == 1

    assert messages(pending, first)[-1] == {"status": 200, "body": {"out": "hello"}}  # finished, all five letters
    assert stream.steps == 5 and messages(pending, late[0]) == []
    assert inference.redis_client().llen(pending) == 1  # "no" waits for the next task
    assert sent_tasks == [("worker.tasks.predict", [pending])]
