"""Run events for websocket subscribers: numbered per run, sent after the database commit.

Each event gets the run's next `seq`, taken from `Run.event_seq` inside the caller's transaction, so
numbers are unique across processes. Channels drops messages to full channels, so a client that sees a
gap reloads the history from the snapshot: the database always has everything.
"""

from __future__ import annotations

import asyncio
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


def events_send(*, run_id: int, events: list[dict], loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Send numbered events to the run's group. Never raises: subscribers can resync from the DB."""
    layer = get_channel_layer()
    if layer is None or not events:
        return

    async def send_all():
        for event in events:
            await layer.group_send(run_group_name(run_id), {"type": "run.event", "event": event})

    try:
        if loop is not None:
            loop.run_until_complete(send_all())
        else:
            async_to_sync(send_all)()
    except Exception:  # the channel layer is best effort by design
        logger.warning("could not send %d events of run %s", len(events), run_id, exc_info=True)
