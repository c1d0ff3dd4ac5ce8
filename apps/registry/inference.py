"""Sending predictions to the inference workers without blocking a web thread.

A fast prediction's inputs go to Redis under a fresh key, the `inference` queue gets the key, and the
(async) view waits on the reply list with BLPOP: the event loop keeps serving other requests while a
worker computes. Slow predictions (videos) are rows polled over REST instead.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
import weakref

import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings

from apps.registry.models import ModelVersion

PREDICT_TASK = "worker.tasks.predict"
REQUEST_KEY = "dlsite:predict:request:{}"
REPLY_KEY = "dlsite:predict:reply:{}"
REQUEST_TTL_SECONDS = 120

_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class PredictTimeout(Exception):
    pass


def _client() -> aioredis.Redis:
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


def encode_request(model: ModelVersion, files: dict[str, bytes], data: dict) -> str:
    return json.dumps({
        "model": model_reference(model),
        "files": {name: base64.b64encode(content).decode("ascii") for name, content in files.items()},
        "data": data,
    })


async def predict(*, model: ModelVersion, files: dict[str, bytes], data: dict, timeout: float) -> dict:
    """The worker's reply: {"status": 200, "body": ...} or {"status": 4xx/5xx, "message": ...}."""
    from dlsite.celery import app

    key = uuid.uuid4().hex
    client = _client()
    await client.set(REQUEST_KEY.format(key), encode_request(model, files, data), ex=REQUEST_TTL_SECONDS)
    await sync_to_async(app.send_task, thread_sensitive=False)(PREDICT_TASK, args=[key])
    reply = await client.blpop([REPLY_KEY.format(key)], timeout=timeout)
    if reply is None:
        # Whoever picks the request up later finds nothing to do.
        await client.delete(REQUEST_KEY.format(key))
        raise PredictTimeout
    return json.loads(reply[1])
