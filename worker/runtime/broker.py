"""What the Redis broker still holds for training runs: messages waiting in a queue, and messages a
worker has reserved but not yet started (kombu's `unacked` hash).

The reaper uses it to tell a queued run that is merely waiting its turn from one whose message was
lost (Redis restarted without persistence), and re-sends only the latter.
"""

from __future__ import annotations

import base64
import json
import logging

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

TRAIN_TASK = "worker.tasks.run_train"
UNACKED_HASH = "unacked"  # kombu's Redis transport keeps reserved messages here
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)


def pending_train_messages(queues: list[str]) -> set[tuple[int, int]] | None:
    """(run id, attempt) of every training message still in the broker; None if it cannot be read."""
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)
        raw_messages = []
        for queue in queues:
            for step in PRIORITY_STEPS:
                key = queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}"
                raw_messages.extend(client.lrange(key, 0, -1))
        for value in client.hvals(UNACKED_HASH):
            raw_messages.append(json.dumps(json.loads(value)[0]))
    except (redis.RedisError, ValueError, IndexError):
        logger.warning("could not read the broker's queues", exc_info=True)
        return None
    pending = set()
    for raw in raw_messages:
        run = _train_arguments(raw)
        if run is not None:
            pending.add(run)
    return pending


def _train_arguments(raw: bytes | str) -> tuple[int, int] | None:
    try:
        message = json.loads(raw)
        if message.get("headers", {}).get("task") != TRAIN_TASK:
            return None
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return int(args[0]), int(args[1])
    except (ValueError, KeyError, IndexError, TypeError):
        return None
