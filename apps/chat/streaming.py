"""Asking an inference worker for a chat reply that streams back as it is decoded.

The request goes the way of every fast prediction (apps/registry/inference.py): pushed onto the
pending list that inference workers serve, under the same lease, its messages coming back through
this process's inbox. It is marked `stream`, so the worker (worker/runtime/inference.py, `Streams`)
sends `{"token": text}` each time a decoding step adds to the reply, then the usual
`{"status": ..., "body"|"message": ...}`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from apps.registry.inference import submit


async def reply_stream(*, model: dict, data: dict, timeout: float) -> AsyncIterator[dict]:
    """The worker's messages for one request: {"token": text}, ..., then the final reply. Raises
    PredictTimeout when the whole reply has not come within `timeout` seconds."""
    deadline = time.time() + timeout
    replies = await submit(model=model, files={}, data=data, deadline=deadline, stream=True)
    try:
        while True:
            message = await replies.next(deadline - time.time())
            yield message
            if "token" not in message:
                return
    finally:
        replies.close()
