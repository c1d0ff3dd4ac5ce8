"""Chat writes: conversations and their messages."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from apps.chat.models import ChatMessage, ChatSession
from apps.registry.models import ModelVersion


def chat_session_start(*, user, model_version: ModelVersion) -> ChatSession:
    return ChatSession.objects.create(owner=user, model_version=model_version)


def chat_message_add(*, session: ChatSession, role: str, text: str, latency_ms: float | None = None) -> ChatMessage:
    """Append a message and mark the conversation as the latest."""
    with transaction.atomic():
        message = ChatMessage.objects.create(session=session, role=role, text=text, latency_ms=latency_ms)
        ChatSession.objects.filter(pk=session.pk).update(updated_at=timezone.now())
    return message
