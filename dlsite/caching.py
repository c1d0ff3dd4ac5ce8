"""A small in-process cache whose entries expire: for answers the hot request paths look up again and
again (API tokens, which models a token may use) and may serve a few seconds stale.

Plain memory, no I/O, so it may be read from the event loop; bounded, so a flood of distinct keys
cannot grow it without limit.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Hashable


class TimedCache:
    def __init__(self, *, seconds: float, max_entries: int = 10_000):
        self.seconds = seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()  # DRF authenticates in worker threads too

    def get(self, key: Hashable) -> Any | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def set(self, key: Hashable, value: Any) -> None:
        if self.seconds <= 0:
            return
        with self._lock:
            self._entries[key] = (time.monotonic() + self.seconds, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
