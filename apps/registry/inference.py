"""Sending fast predictions to the inference workers without blocking a web thread.

A request's inputs are pushed onto one Redis list of pending predictions, and the (async) view waits
on its own reply list with BLPOP: the event loop keeps serving other requests while a worker computes.
Slow predictions (videos) are rows polled over REST instead.

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
import time
import uuid
import weakref

import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings

from apps.registry.models import ModelVersion

PREDICT_TASK = "worker.tasks.predict"
PENDING_KEY = "dlsite:predict:pending"
LEASE_SUFFIX = ":lease"  # the lease of a pending list is the key next to it
REPLY_KEY = "dlsite:predict:reply:{}"
# A lease outlives a worker that died holding it by this much at most. A live worker renews it each
# time round its loop: at least once a second while idle, after each batch while busy.
LEASE_SECONDS = 10

_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def prediction_output_path(prediction_id: int, name: str) -> str:
    """Where a file a slow prediction produced (a rollout's video) is stored."""
    return f"predictions/{prediction_id}/outputs/{name}"


def prediction_file_url(prediction_id: int, name: str) -> str:
    return f"/api/v1/predictions/{prediction_id}/files/{name}"


class PredictTimeout(Exception):
    """No worker answered within the prediction timeout."""


def client() -> aioredis.Redis:
    """One connection pool per event loop (a pool cannot cross loops)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = aioredis.from_url(settings.REDIS_URL, socket_timeout=None)  # BLPOP has its own timeout
        _clients[loop] = client
    return client


def model_reference(model: ModelVersion) -> dict:
    """What a worker needs to load (and cache) a model version."""
    return {"id": model.pk, "pipeline": model.pipeline, "storage_path": model.storage_path, "sha256": model.sha256}


def encode_request(
    *, key: str, model: dict, files: dict[str, bytes], data: dict, deadline: float, stream: bool = False
) -> str:
    request = {
        "key": key,
        "model": model,
        "files": {name: base64.b64encode(content).decode("ascii") for name, content in files.items()},
        "data": data,
        "deadline": deadline,  # wall-clock seconds; after it nobody waits for the answer
    }
    if stream:  # the worker pushes {"token": text} messages before the reply (apps/chat/streaming.py)
        request["stream"] = True
    return json.dumps(request)


def send_predict_task(pending_key: str = PENDING_KEY) -> None:
    from dlsite.celery import app

    app.send_task(PREDICT_TASK, args=[pending_key])


async def submit(
    *, model: dict, files: dict[str, bytes], data: dict, deadline: float, stream: bool = False
) -> str:
    """Push one request onto the pending list, sending a worker task when no worker holds the list's
    lease; returns the key of the Redis list its reply (and, streaming, its tokens) will arrive on."""
    key = uuid.uuid4().hex
    request = encode_request(key=key, model=model, files=files, data=data, deadline=deadline, stream=stream)
    async with client().pipeline(transaction=True) as pipe:
        pipe.rpush(PENDING_KEY, request)
        pipe.set(PENDING_KEY + LEASE_SUFFIX, key, nx=True, ex=LEASE_SECONDS)
        _, took_lease = await pipe.execute()
    if took_lease:  # no worker is serving the list, nor about to
        await sync_to_async(send_predict_task, thread_sensitive=False)()
    return REPLY_KEY.format(key)


async def predict(*, model: dict, files: dict[str, bytes], data: dict, timeout: float) -> dict:
    """The worker's reply: {"status": 200, "body": ...} or {"status": 4xx/5xx, "message": ...}."""
    reply_key = await submit(model=model, files=files, data=data, deadline=time.time() + timeout)
    reply = await client().blpop([reply_key], timeout=timeout)
    if reply is None:
        raise PredictTimeout  # the worker skips the request once its deadline has passed
    return json.loads(reply[1])
