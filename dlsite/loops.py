"""One object per asyncio event loop, for what cannot cross loops (a Redis connection pool, a task
reading an inbox, a queue). A web server runs one loop; tests and `async_to_sync` run others."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def per_event_loop(factory: Callable[[], T]) -> Callable[[], T]:
    """A function that returns the running loop's `factory()`, made on first use; dropped with its loop."""
    instances: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def get() -> T:
        loop = asyncio.get_running_loop()
        instance = instances.get(loop)
        if instance is None:
            instance = instances[loop] = factory()
        return instance

    return get
