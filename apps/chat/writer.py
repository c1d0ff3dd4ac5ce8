"""Storing chat messages off the reply path, in batches.

A consumer hands each message to its event loop's writer and goes on with the conversation. The
writer stores whatever has accumulated in one transaction (one database connection, one bulk
insert), in the order the messages came, then the next batch. With many people chatting that is one
write per batch rather than a connection and a transaction per message: at 20 chatters those had the
web process's database thread taking half its samples (py-spy) and the interpreter from the event
loop that relays replies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from channels.db import database_sync_to_async

from apps.chat import services
from dlsite.loops import per_event_loop

logger = logging.getLogger(__name__)

class MessageWriter:
    def __init__(self) -> None:
        self._pending: list[tuple[services.NewMessage, asyncio.Future]] = []
        self._task: asyncio.Task | None = None

    def add(self, message: services.NewMessage) -> asyncio.Future:
        """A future done once the message is stored, or could not be (logged): messages are stored in
        the order they are added, so awaiting a conversation's latest one awaits all of its messages."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append((message, future))
        if self._task is None:
            self._task = asyncio.ensure_future(self._drain())
        return future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await database_sync_to_async(_store)([message for message, _ in batch])
                for _, future in batch:
                    future.set_result(None)
        finally:
            self._task = None


def _store(messages: list[services.NewMessage]) -> None:
    try:
        services.chat_messages_add(messages)
        return
    except Exception:
        if len(messages) == 1:
            logger.exception("could not store a chat message with model %s", messages[0].conversation.model_version.pk)
            return
    for message in messages:  # one bad message (its model deleted meanwhile) spoils only itself
        _store([message])


writer: Callable[[], MessageWriter] = per_event_loop(MessageWriter)  # the running event loop's
