"""Run events for websocket subscribers: numbered per run, sent after the database commit.

Each event gets the run's next `seq`, taken from `Run.event_seq` inside the caller's transaction, so
numbers are unique across processes. Channels drops messages to full channels (and Redis loses them
when it restarts), so a subscriber that misses a `seq` gets a fresh snapshot: the database always has
everything.

A batch of events travels as one channel-layer message, `run.events`, holding each event's `seq` and
its JSON text, encoded once here: a server process with hundreds of subscribers to a run then wakes
each of them once per batch and forwards the text as it is. Clients still get one frame per event.
"""

from __future__ import annotations

import asyncio
import json
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import F

from apps.experiments.models import Run

logger = logging.getLogger(__name__)


def run_group_name(run_id: int) -> str:
    return f"run-{run_id}"


def events_number(*, run_id: int, events: list[dict]) -> list[dict]:
    """Give `events` their `seq` numbers; call inside the transaction that writes what they report."""
    if not events:
        return []
    Run.objects.filter(pk=run_id).update(event_seq=F("event_seq") + len(events))
    last = Run.objects.filter(pk=run_id).values_list("event_seq", flat=True).get()
    first = last - len(events) + 1
    return [{**event, "seq": first + index} for index, event in enumerate(events)]


def events_publish(*, run_id: int, events: list[dict]) -> None:
    """Number `events` now and send them once the surrounding transaction commits."""
    numbered = events_number(run_id=run_id, events=events)
    if numbered:
        transaction.on_commit(lambda: events_send(run_id=run_id, events=numbered))


def events_message(events: list[dict]) -> dict:
    """The channel-layer message that carries numbered `events` to a run's subscribers."""
    return {"type": "run.events", "events": [[event["seq"], json.dumps(event)] for event in events]}


def events_send(*, run_id: int, events: list[dict], loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Send numbered events to the run's group. Never raises: subscribers can resync from the DB."""
    layer = get_channel_layer()
    if layer is None or not events:
        return
    message = events_message(events)

    async def send():
        await layer.group_send(run_group_name(run_id), message)

    try:
        if loop is not None:
            loop.run_until_complete(send())
        else:
            async_to_sync(send)()
    except Exception:  # the channel layer is best effort by design
        logger.warning("could not send %d events of run %s", len(events), run_id, exc_info=True)
