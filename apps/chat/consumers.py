"""`/ws/chat/<model_version_id>/`: chatting with a chatbot model version.

Whoever may use the model version (its owner, the users it is shared with, everyone signed in if it
is public) connects with the session cookie or `?token=`. The protocol:

- client: `{"message": "how are you?"}`;
- server: `{"type": "token", "text": ...}` as the reply is decoded (greedy and sampled decoding; beam
  search's reply comes in one piece), then `{"type": "reply", "text": <the whole reply>}`;
- server, when something is wrong: `{"type": "error", "message": ...}`; the socket stays open;
- client, optionally: `{"type": "history"}`, answered with `{"type": "history", "session": id,
  "messages": [{"role": "user"|"bot", "text": ..., "created_at": ...}, ...]}`.

Messages are handled one at a time per socket. The conversation (both sides) is kept in
ChatSession/ChatMessage: a user's latest conversation with a model version is resumed on connect.
Decoding runs on an inference worker (apps/chat/streaming.py): this process never loads a model.
"""

from __future__ import annotations

import asyncio
import json
import time

from channels.db import database_sync_to_async
from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.http import Http404

from apps.accounts.websocket import CLOSE_NOT_FOUND, refusal
from apps.chat import selectors, services, streaming
from apps.chat.models import ChatMessage
from apps.chat.writer import writer
from apps.registry.inference import PredictTimeout, model_reference


MAX_MESSAGE_CHARACTERS = 2000


class ChatConsumer(AsyncJsonWebsocketConsumer):
    channel_layer_alias = None  # replies come through the process's prediction inbox, not a channel
    written_latest: asyncio.Future | None = None  # done once the latest message is stored

    async def connect(self):
        refused = refusal(self.scope)
        if refused is not None:
            await self.close(code=refused)
            return
        user = self.scope["user"]
        model_version_id = int(self.scope["url_route"]["kwargs"]["model_version_id"])
        try:
            self.model = await database_sync_to_async(selectors.chat_model_get_usable)(
                user=user, model_version_id=model_version_id
            )
        except Http404:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        session = await database_sync_to_async(selectors.chat_session_latest)(user=user, model_version=self.model)
        self.conversation = services.Conversation(user, self.model, session)
        await self.accept()

    async def dispatch(self, message):
        # Channels closes stale database connections before handling each message, a hop to a
        # thread and back every time. This consumer reaches the database only through
        # database_sync_to_async, which does that itself, so a chat message goes without it.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        try:
            content = json.loads(text_data or "")
        except ValueError:
            await self.send_error('Expected a JSON object such as {"message": "hello"}.')
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs):
        if isinstance(content, dict) and content.get("type") == "history":
            await self.send_history()
            return
        message = content.get("message") if isinstance(content, dict) else None
        if not isinstance(message, str) or not message.strip():
            await self.send_error('message: required, a non-empty string, as in {"message": "hello"}.')
            return
        if len(message) > MAX_MESSAGE_CHARACTERS:
            await self.send_error(f"message: at most {MAX_MESSAGE_CHARACTERS} characters.")
            return
        await self.reply(message)

    async def reply(self, message: str) -> None:
        started = time.perf_counter()
        self.remember(ChatMessage.Role.USER, message)
        reply = None
        try:
            messages = streaming.reply_stream(
                model=model_reference(self.model), data={"sentence": message}, timeout=settings.PREDICT_TIMEOUT
            )
            async for item in messages:
                if "token" in item:
                    await self.send_json({"type": "token", "text": item["token"]})
                elif item["status"] == 200:
                    reply = item["body"]["out"]
                    await self.send_json({"type": "reply", "text": reply})
                else:
                    await self.send_error(item["message"])
        except PredictTimeout:
            await self.send_error(f"No reply within {settings.PREDICT_TIMEOUT:g} s; try again later.")
        if reply is not None:
            self.remember(ChatMessage.Role.BOT, reply, latency_ms=(time.perf_counter() - started) * 1000)

    # The conversation is written in the background (apps/chat/writer.py), so that neither a reply nor
    # the next message waits for the database.

    def remember(self, role: str, text: str, latency_ms: float | None = None) -> None:
        self.written_latest = writer().add(services.NewMessage(self.conversation, role, text, latency_ms))

    async def written(self) -> None:
        if self.written_latest is not None:
            await self.written_latest

    async def disconnect(self, code):
        await self.written()

    async def send_history(self) -> None:
        await self.written()
        await self.send_json(await database_sync_to_async(self._history)())

    def _history(self) -> dict:
        session = self.conversation.session
        messages = selectors.chat_message_list(session=session) if session is not None else []
        return {
            "type": "history",
            "session": session.pk if session is not None else None,
            "messages": [
                {"role": message.role, "text": message.text, "created_at": message.created_at.isoformat()}
                for message in messages
            ],
        }

    async def send_error(self, message: str) -> None:
        await self.send_json({"type": "error", "message": message})
