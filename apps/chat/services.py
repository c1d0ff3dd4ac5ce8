"""Chat writes: conversations and their messages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.chat.models import ChatMessage, ChatSession
from apps.registry.models import ModelVersion


@dataclass
class Conversation:
    """A user's conversation with a model version; its session is started with its first message."""

    user: Any
    model_version: ModelVersion
    session: ChatSession | None = None


@dataclass(frozen=True)
class NewMessage:
    conversation: Conversation
    role: str
    text: str
    latency_ms: float | None = None  # a bot reply's, from the message to the whole reply


def chat_session_start(*, user, model_version: ModelVersion) -> ChatSession:
    return ChatSession.objects.create(owner=user, model_version=model_version)


def chat_messages_add(messages: Sequence[NewMessage]) -> None:
    """Store messages in their order, in one transaction: start the conversations that have no session
    yet, and mark every conversation written to as the latest."""
    started = []
    try:
        with transaction.atomic():
            for message in messages:
                conversation = message.conversation
                if conversation.session is None:
                    conversation.session = chat_session_start(user=conversation.user, model_version=conversation.model_version)
                    started.append(conversation)
            ChatMessage.objects.bulk_create(
                ChatMessage(session=message.conversation.session, role=message.role, text=message.text, latency_ms=message.latency_ms)
                for message in messages
            )
            sessions = {message.conversation.session.pk for message in messages}
            ChatSession.objects.filter(pk__in=sessions).update(updated_at=timezone.now())
    except BaseException:
        for conversation in started:  # rolled back with the rest
            conversation.session = None
        raise
