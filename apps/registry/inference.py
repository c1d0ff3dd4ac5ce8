"""Sending fast predictions to the inference workers without blocking a web thread.

A request's inputs are pushed onto one Redis list of pending predictions, and the (async) view awaits
its reply: the event loop keeps serving other requests while a worker computes. Slow predictions
(videos) are rows polled over REST instead.

Replies come back through one inbox per web process (per event loop): a Redis list onto which
workers push every reply, and every token of a streamed one, for this process's requests, each
tagged with its request's key. One reader task pops whatever has come and hands each message to the
request waiting for it, so a burst of replies costs one wake-up rather than a BLPOP per message.

Workers answer the pending list in batches (worker/runtime/inference.py): a `worker.tasks.predict`
task pops whatever is pending, runs each model's share through its predictor in one call, and keeps
serving the list until it has been idle for PREDICT_LINGER seconds. While such a task is queued or
running, a lease key exists and a view only pushes; the view that finds no lease takes it and sends
the task. A busy period therefore costs one Celery message rather than one per prediction, and a
prediction arriving while a worker is serving waits for no broker round trip at all.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from collections.abc import Callable

import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings

from apps.registry.models import ModelVersion
from dlsite.loops import per_event_loop

logger = logging.getLogger(__name__)

PREDICT_TASK = "worker.tasks.predict"
PENDING_KEY = "dlsite:predict:pending"
LEASE_SUFFIX = ":lease"  # the lease of a pending list is the key next to it
INBOX_KEY = "dlsite:predict:inbox:{}"
KEY_LENGTH = 32  # a request key (uuid4 hex), the prefix of each message in an inbox
READ_AT_ONCE = 1000  # messages taken from an inbox per wake-up
# A lease outlives a worker that died holding it by this much at most. A live worker renews it each
# time round its loop: at least once a second while idle, after each batch while busy.
LEASE_SECONDS = 10



def prediction_output_path(prediction_id: int, name: str) -> str:
    """Where a file a slow prediction produced (a rollout's video) is stored."""
    return f"predictions/{prediction_id}/outputs/{name}"


def prediction_file_url(prediction_id: int, name: str) -> str:
    return f"/api/v1/predictions/{prediction_id}/files/{name}"


class PredictTimeout(Exception):
    """No worker answered within the prediction timeout."""


# One connection pool per event loop (a pool cannot cross loops). BLPOP has its own timeout.
client: Callable[[], aioredis.Redis] = per_event_loop(
    lambda: aioredis.from_url(settings.REDIS_URL, socket_timeout=None)
)


def model_reference(model: ModelVersion) -> dict:
    """What a worker needs to load (and cache) a model version."""
    return {"id": model.pk, "pipeline": model.pipeline, "storage_path": model.storage_path, "sha256": model.sha256}


def encode_request(
    *, key: str, reply_to: str, model: dict, files: dict[str, bytes], data: dict, deadline: float, stream: bool = False
) -> str:
    request = {
        "key": key,
        "reply_to": reply_to,  # the inbox its messages go to, each prefixed with `key`
        "model": model,
        "files": {name: base64.b64encode(content).decode("ascii") for name, content in files.items()},
        "data": data,
        "deadline": deadline,  # wall-clock seconds; after it nobody waits for the answer
    }
    if stream:  # the worker pushes {"token": text} messages before the reply (apps/chat/streaming.py)
        request["stream"] = True
    return json.dumps(request)


class Replies:
    """The messages of one request, in order, as its inbox hands them out; close when done."""

    def __init__(self, inbox: Inbox, key: str):
        self.inbox, self.key = inbox, key
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    async def next(self, timeout: float) -> dict:
        """The next message; PredictTimeout if none comes within `timeout` seconds."""
        try:
            async with asyncio.timeout(max(timeout, 0)):
                return json.loads(await self.queue.get())
        except TimeoutError:
            raise PredictTimeout from None

    def close(self) -> None:
        self.inbox.waiting.pop(self.key, None)  # later messages (after a timeout) are dropped


class Inbox:
    """This event loop's inbox, and the task reading it while any request awaits messages."""

    def __init__(self) -> None:
        self.key = INBOX_KEY.format(uuid.uuid4().hex)
        self.waiting: dict[str, Replies] = {}
        self._reader: asyncio.Task | None = None

    def expect(self, key: str) -> Replies:
        replies = self.waiting[key] = Replies(self, key)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.ensure_future(self._read())
        return replies

    async def _read(self) -> None:
        redis = client()
        while self.waiting:
            try:
                first = await redis.blpop([self.key], timeout=1)  # at least once a second: anyone left?
                if first is None:
                    continue
                messages = [first[1], *(await redis.lpop(self.key, READ_AT_ONCE) or [])]
            except aioredis.RedisError:
                logger.exception("reading the prediction inbox %s", self.key)
                await asyncio.sleep(0.5)  # the waiting requests time out if Redis stays away
                continue
            for message in messages:
                replies = self.waiting.get(message[:KEY_LENGTH].decode())
                if replies is not None:
                    replies.queue.put_nowait(message[KEY_LENGTH:])


inbox: Callable[[], Inbox] = per_event_loop(Inbox)  # this event loop's


def send_predict_task(pending_key: str = PENDING_KEY) -> None:
    from dlsite.celery import app

    app.send_task(PREDICT_TASK, args=[pending_key])


async def submit(
    *, model: dict, files: dict[str, bytes], data: dict, deadline: float, stream: bool = False
) -> Replies:
    """Push one request onto the pending list, sending a worker task when no worker holds the list's
    lease; returns its Replies (close them when done)."""
    key = uuid.uuid4().hex
    replies = inbox().expect(key)  # before the request is out: its reply may come at once
    request = encode_request(
        key=key, reply_to=replies.inbox.key, model=model, files=files, data=data, deadline=deadline, stream=stream
    )
    try:
        # No MULTI needed: once the request is in, no worker can end the lease (RELEASE_IF_IDLE waits
        # for an empty list), so either the lease is there and its worker serves the request, or it is
        # free and this view takes it.
        async with client().pipeline(transaction=False) as pipe:
            pipe.rpush(PENDING_KEY, request)
            pipe.set(PENDING_KEY + LEASE_SUFFIX, key, nx=True, ex=LEASE_SECONDS)
            _, took_lease = await pipe.execute()
        if took_lease:  # no worker is serving the list, nor about to
            await sync_to_async(send_predict_task, thread_sensitive=False)(PENDING_KEY)
    except BaseException:
        replies.close()
        raise
    return replies


async def predict(*, model: dict, files: dict[str, bytes], data: dict, timeout: float) -> dict:
    """The worker's reply: {"status": 200, "body": ...} or {"status": 4xx/5xx, "message": ...}."""
    replies = await submit(model=model, files=files, data=data, deadline=time.time() + timeout)
    try:
        return await replies.next(timeout)  # a worker skips a request once its deadline has passed
    finally:
        replies.close()
