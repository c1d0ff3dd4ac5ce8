"""A web process's inbox: the messages workers push for its requests, tagged with each request's key,
reach the request waiting for them, in order, however many come at once. Real Redis."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync

from apps.registry import inference


def test_messages_that_come_together_reach_their_requests_in_order():
    async def body():
        first, second = inference.inbox().expect("a" * 32), inference.inbox().expect("b" * 32)
        assert first.inbox is second.inbox  # one inbox per event loop
        burst = [("a", {"token": "hel"}), ("c", {"status": 200}), ("b", {"token": "hi"}), ("a", {"token": "lo"}),
                 ("b", {"status": 200, "body": "hi"}), ("a", {"status": 200, "body": "hello"})]  # fmt: skip
        await inference.client().rpush(first.inbox.key, *(tag * 32 + json.dumps(message) for tag, message in burst))
        got = {"a": [await first.next(5) for _ in range(3)], "b": [await second.next(5) for _ in range(2)]}
        first.close()
        second.close()
        await inference.client().delete(first.inbox.key)
        return got

    assert async_to_sync(body)() == {  # "c" waited for nothing: dropped
        "a": [{"token": "hel"}, {"token": "lo"}, {"status": 200, "body": "hello"}],
        "b": [{"token": "hi"}, {"status": 200, "body": "hi"}],
    }


def test_a_request_that_gets_nothing_times_out_and_is_forgotten():
    async def body():
        replies = inference.inbox().expect("d" * 32)
        with pytest.raises(inference.PredictTimeout):
            await replies.next(0.05)
        replies.close()
        return dict(replies.inbox.waiting)

    assert async_to_sync(body)() == {}
