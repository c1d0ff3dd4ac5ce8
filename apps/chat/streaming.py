"""Asking an inference worker for a chat reply that streams back as it is decoded.

The request goes the way of every fast prediction (apps/registry/inference.py): pushed onto the
pending list that inference workers serve in batches, under the same lease. It is marked `stream`,
so the worker (worker/runtime/inference.py, `stream_replies`) pushes `{"token": text}` onto the
request's reply list after each decoded step, then the usual `{"status": ..., "body"|"message": ...}`.
A list rather than a pub/sub channel: nothing is lost if the worker is faster than the consumer
starts listening, and the reply expires with the list if nobody reads it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import weakref
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings

from apps.registry.inference import (
    LEASE_SECONDS,
    LEASE_SUFFIX,
    PENDING_KEY,
    REPLY_KEY,
    PredictTimeout,
    encode_request,
    send_predict_task,
)

_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _client() -> aioredis.Redis:
    """One connection pool per event loop (a pool cannot cross loops)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = aioredis.from_url(settings.REDIS_URL, socket_timeout=None)  # BLPOP has its own timeout
        _clients[loop] = client
    return client


async def reply_stream(*, model: dict, data: dict, timeout: float) -> AsyncIterator[dict]:
    """The worker's messages for one request: {"token": text}, ..., then the final reply. Raises
    PredictTimeout when the whole reply has not come within `timeout` seconds."""
    key = uuid.uuid4().hex
    deadline = time.time() + timeout
    request = json.loads(encode_request(key=key, model=model, files={}, data=data, deadline=deadline))
    request["stream"] = True
    client = _client()
    async with client.pipeline(transaction=True) as pipe:
        pipe.rpush(PENDING_KEY, json.dumps(request))
        pipe.set(PENDING_KEY + LEASE_SUFFIX, key, nx=True, ex=LEASE_SECONDS)
        _, took_lease = await pipe.execute()
    if took_lease:  # no worker is serving the list, nor about to
        await sync_to_async(send_predict_task, thread_sensitive=False)()
    reply_key = REPLY_KEY.format(key)
    while True:
        remaining = deadline - time.time()
        item = await client.blpop([reply_key], timeout=remaining) if remaining > 0 else None
        if item is None:
            raise PredictTimeout
        message = json.loads(item[1])
        yield message
        if "token" not in message:
            return
