"""TimedCache: entries expire after `seconds`, the oldest go first beyond `max_entries`, 0 s caches nothing."""

from __future__ import annotations

import time

from dlsite.caching import TimedCache


def test_an_entry_lives_for_its_seconds():
    cache = TimedCache(seconds=0.05)
    cache.set("token", "alice")
    assert cache.get("token") == "alice"
    time.sleep(0.06)
    assert cache.get("token") is None


def test_the_least_recently_set_entries_go_first():
    cache = TimedCache(seconds=60, max_entries=2)
    cache.set("a", 1)
    cache.set("b", 2)
    cache.set("a", 3)
    cache.set("c", 4)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (3, None, 4)


def test_zero_seconds_caches_nothing():
    cache = TimedCache(seconds=0)
    cache.set("token", "alice")
    assert cache.get("token") is None

