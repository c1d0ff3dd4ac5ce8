"""Asking an inference worker for a chat reply that streams back as it is decoded.

The request goes the way of every fast prediction (apps/registry/inference.py): pushed onto the
pending list that inference workers serve in batches, under the same lease. It is marked `stream`,
so the worker (worker/runtime/inference.py, `stream_replies`) pushes `{"token": text}` onto the
request's reply list after each decoded step, then the usual `{"status": ..., "body"|"message": ...}`.
A list rather than a pub/sub channel: nothing is lost if the worker is faster than the consumer
starts listening, and the reply expires with the list if nobody reads it.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

from apps.registry.inference import PredictTimeout, client, submit


async def reply_stream(*, model: dict, data: dict, timeout: float) -> AsyncIterator[dict]:
    """The worker's messages for one request: {"token": text}, ..., then the final reply. Raises
    PredictTimeout when the whole reply has not come within `timeout` seconds."""
    deadline = time.time() + timeout
    reply_key = await submit(model=model, files={}, data=data, deadline=deadline, stream=True)
    while True:
        remaining = deadline - time.time()
        item = await client().blpop([reply_key], timeout=remaining) if remaining > 0 else None
        if item is None:
            raise PredictTimeout
        message = json.loads(item[1])
        yield message
        if "token" not in message:
            return
