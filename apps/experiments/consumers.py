"""`/ws/runs/<id>/`: a snapshot of the run on connect, then its live events. Owner only.

A server process joins each run's channel-layer group once, through a `RunFeed`, and hands every batch
of events to its subscribers of that run: channels-redis wakes each member of a group for each message
through a few tasks of its own, which with 500 subscribers of one run was most of the server's work.
Each consumer writes to its client from one task, so events and snapshots go out in order.

Events can be lost on their way (Channels drops messages to full channels; a Redis restart loses the
group's members and whatever was queued), so the client is kept in step:

- an event whose `seq` skips one is replaced by a fresh snapshot, which holds it and all before it;
- when no event came for `RUN_EVENTS_RESYNC_INTERVAL` seconds, the feed joins the run's group again
  (idempotent; a Redis restart empties it, and channels-redis lets a membership expire after a day)
  and reads the run's last `seq` from the database: subscribers behind it get a snapshot. A running
  run sends progress twice a second, so while it trains this costs nothing;
- the client can ask for a snapshot at any time with `{"type": "resync"}`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import weakref
from dataclasses import dataclass
from functools import partial

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.http import Http404

from apps.accounts.websocket import CLOSE_NOT_FOUND, refusal
from apps.experiments import selectors
from apps.experiments.events import run_group_name
from apps.experiments.models import TERMINAL_STATUSES

logger = logging.getLogger(__name__)

INBOX_SIZE = 100  # batches waiting for a slow client; more are dropped, and it gets a snapshot instead
RECEIVE_RETRY_FIRST, RECEIVE_RETRY_MAX = 0.05, 2.0  # seconds between tries while Redis is away


class RunConsumer(AsyncJsonWebsocketConsumer):
    channel_layer_alias = None  # events come from the process's RunFeed, not a channel of each consumer
    feed: RunFeed | None = None
    writer: asyncio.Task | None = None

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.unsubscribe()

    async def connect(self):
        refused = refusal(self.scope)
        if refused is not None:
            await self.close(code=refused)
            return
        user = self.scope["user"]
        self.run_id = int(self.scope["url_route"]["kwargs"]["run_id"])
        if await database_sync_to_async(selectors.run_event_position)(user=user, run_id=self.run_id) is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.user = user
        self.last_seq = 0
        self.inbox: asyncio.Queue[tuple[str, list | int | None]] = asyncio.Queue(INBOX_SIZE)
        # Subscribe before reading the snapshot, so nothing falls between them; events the snapshot
        # already holds are dropped by their seq.
        self.feed = await RunFeed.subscribe(run_id=self.run_id, subscriber=self)
        await self.accept()
        if await self.send_snapshot():
            self.unsubscribe()  # finished: nothing more will come
        else:
            self.writer = asyncio.create_task(self.write())

    async def disconnect(self, code):
        self.unsubscribe()

    def unsubscribe(self) -> None:
        if self.writer is not None:
            self.writer.cancel()
        if self.feed is not None:
            self.feed.unsubscribe(self)
            self.feed = None

    async def receive_json(self, content, **kwargs):
        if content.get("type") != "resync" or not hasattr(self, "user"):
            return
        if self.writer is not None and not self.writer.done():
            self.post(("snapshot", None))  # in turn with the events
        else:
            await self.send_snapshot()  # a finished run: nothing else is sent

    # What the feed hands over; the writer task sends it ------------------------------------------------

    def deliver(self, events: list) -> None:
        """A batch of events, [seq, JSON text] each, in order."""
        self.post(("events", events))

    def catch_up(self, seq: int) -> None:
        """The run is at event `seq`: send a snapshot if the client does not have it."""
        self.post(("snapshot", seq))

    def post(self, item: tuple) -> None:
        try:
            self.inbox.put_nowait(item)
        except asyncio.QueueFull:  # the client does not keep up: what it misses comes in a snapshot
            pass

    async def write(self):
        try:
            while True:
                kind, payload = await self.inbox.get()
                if kind == "events":
                    for seq, text in payload:
                        if seq <= self.last_seq:
                            continue  # the snapshot holds it
                        if seq > self.last_seq + 1:
                            if await self.send_snapshot():  # it holds this event and those that never came
                                return
                            continue
                        self.last_seq = seq
                        await self.send(text_data=text)
                elif payload is None or payload > self.last_seq:
                    if await self.send_snapshot():
                        return
        except asyncio.CancelledError:
            raise
        except Exception:  # the client went away mid-send; the disconnect cleans up
            logger.debug("run %s: subscriber writer stopped", self.run_id, exc_info=True)

    async def send_snapshot(self) -> bool:
        """Send a snapshot read after now (and a finished run's final status); True once nothing more will come."""
        try:
            snapshot = await snapshot_reads.get(user=self.user, run_id=self.run_id)
        except Http404:  # deleted since
            await self.close(code=CLOSE_NOT_FOUND)
            return True
        except Exception:  # the database away: the next gap, or the feed's next look, tries again
            logger.warning("run %s: could not read a snapshot", self.run_id, exc_info=True)
            return False
        self.last_seq = snapshot.seq
        await self.send(text_data=snapshot.text)
        if snapshot.final_status:
            await self.send(text_data=snapshot.final_status)
        return bool(snapshot.final_status)


class RunFeed:
    """One run's events in one server process: a single member of the run's group, whatever the number
    of the process's subscribers to the run, each batch handed to each of them."""

    feeds: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, RunFeed]] = weakref.WeakKeyDictionary()

    @classmethod
    async def subscribe(cls, *, run_id: int, subscriber: RunConsumer) -> RunFeed:
        feeds = cls.feeds.setdefault(asyncio.get_running_loop(), {})
        feed = feeds.get(run_id)
        if feed is None:
            feed = feeds[run_id] = cls(run_id)
        feed.subscribers[subscriber] = None
        try:
            await asyncio.shield(feed.started)
        except BaseException:
            feed.unsubscribe(subscriber)
            raise
        return feed

    def __init__(self, run_id: int):
        self.run_id = run_id
        self.group = run_group_name(run_id)
        self.layer = get_channel_layer()
        self.subscribers: dict[RunConsumer, None] = {}  # an ordered set
        self.loop = asyncio.get_running_loop()
        self.last_batch_at = self.loop.time()
        self.tasks: list[asyncio.Task] = []
        self.started = asyncio.ensure_future(self.start())

    async def start(self) -> None:
        try:
            self.channel = await self.layer.new_channel()
            await self.layer.group_add(self.group, self.channel)
        except BaseException:
            self.close()
            raise
        self.tasks = [asyncio.create_task(self.read()), asyncio.create_task(self.watch())]

    def unsubscribe(self, subscriber: RunConsumer) -> None:
        self.subscribers.pop(subscriber, None)
        if not self.subscribers:
            self.close()

    def close(self) -> None:
        feeds = self.feeds.get(self.loop, {})
        if feeds.get(self.run_id) is self:
            del feeds[self.run_id]
        self.started.cancel()
        for task in self.tasks:
            task.cancel()
        if getattr(self, "channel", None) and not self.loop.is_closed():
            # Best effort: a membership left behind expires, and its messages go nowhere.
            self.loop.create_task(self.leave())

    async def leave(self) -> None:
        try:
            await self.layer.group_discard(self.group, self.channel)
        except Exception:
            logger.info("run %s: could not leave the group", self.run_id, exc_info=True)

    async def read(self) -> None:
        pause = RECEIVE_RETRY_FIRST
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis away: the watcher rejoins and resyncs once it is back
                logger.warning("run %s: channel layer receive failed", self.run_id, exc_info=True)
                await asyncio.sleep(pause)
                pause = min(2 * pause, RECEIVE_RETRY_MAX)
                continue
            pause = RECEIVE_RETRY_FIRST
            if message.get("type") == "run.event":  # one event, as workers before batching sent them
                events = [[message["event"]["seq"], json.dumps(message["event"])]]
            else:
                events = message["events"]
            self.last_batch_at = self.loop.time()
            for subscriber in list(self.subscribers):
                subscriber.deliver(events)

    async def watch(self) -> None:
        interval = settings.RUN_EVENTS_RESYNC_INTERVAL
        while True:
            # Spread apart, so that the processes serving one run do not all ask at once.
            await asyncio.sleep(interval / 4 * random.uniform(0.75, 1.25))
            if self.loop.time() - self.last_batch_at < interval:
                continue  # events arrive: the membership holds
            self.last_batch_at = self.loop.time()  # the next look in an interval, unless events come
            subscriber = next(iter(self.subscribers), None)
            if subscriber is None:
                continue
            try:
                await self.layer.group_add(self.group, self.channel)
                position = await database_sync_to_async(selectors.run_event_position)(
                    user=subscriber.user, run_id=self.run_id
                )
            except Exception:  # Redis or the database away: try again next time
                logger.warning("run %s: could not check the feed", self.run_id, exc_info=True)
                continue
            seq, status = position or (float("inf"), "")  # deleted: their snapshot reads say so
            await asyncio.sleep(interval / 5)  # for events already on their way
            for subscriber in list(self.subscribers):
                subscriber.catch_up(seq)
            if status in TERMINAL_STATUSES:
                return  # nothing more will come


# Snapshots ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    seq: int
    text: str  # the snapshot as JSON
    final_status: str  # the status event that follows a finished run's snapshot, as JSON; "" if running


def read_snapshot(*, user, run_id: int) -> Snapshot:
    run = selectors.run_get_for_user(user=user, run_id=run_id)
    snapshot = selectors.run_snapshot(run=run)
    final_status = ""
    if run.is_finished:
        final_status = json.dumps({"type": "status", "status": run.status, "seq": snapshot["seq"], "final": True})
    return Snapshot(seq=snapshot["seq"], text=json.dumps(snapshot), final_status=final_status)


class SnapshotReads:
    """A run's snapshot, read once for all its subscribers in this process that ask at the same time.

    When events are lost, every subscriber of the run notices at once; so do the clients that all
    reconnect after a restart. Each asker waits for a read that starts after it asks, so the snapshot
    holds every event it may have missed: the reads of one run follow one another, and whoever asks
    while one is under way shares the next.
    """

    def __init__(self):
        self.next: dict[tuple, asyncio.Future] = {}  # the next read of each run, not started yet
        self.current: dict[tuple, asyncio.Task] = {}  # the latest read of each run

    async def get(self, *, user, run_id: int) -> Snapshot:
        loop = asyncio.get_running_loop()
        key = (loop, user.pk, run_id)
        future = self.next.get(key)
        if future is None:
            future = self.next[key] = loop.create_future()
            future.add_done_callback(lambda done: done.cancelled() or done.exception())  # seen, if nobody waits
            task = self.current[key] = asyncio.create_task(self.read(key, future, self.current.get(key), user, run_id))
            task.add_done_callback(partial(self.forget, key))
        return await asyncio.shield(future)

    async def read(self, key, future: asyncio.Future, previous: asyncio.Task | None, user, run_id: int) -> None:
        try:
            if previous is not None:
                await asyncio.wait([previous])
            del self.next[key]
            future.set_result(await database_sync_to_async(read_snapshot)(user=user, run_id=run_id))
        except Exception as error:
            future.set_exception(error)
        finally:
            if self.next.get(key) is future:
                del self.next[key]
            future.cancel()  # cancelled itself (the server stops): so are its askers; a no-op once done

    def forget(self, key, task: asyncio.Task) -> None:
        if self.current.get(key) is task:
            del self.current[key]


snapshot_reads = SnapshotReads()
