"""Chat reads. Who may chat with a model version is the registry's rule (its owner, the users it is
shared with, everyone signed in if public); a user sees only their own conversations."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.chat.models import ChatMessage, ChatSession
from apps.registry.models import ModelVersion
from apps.registry.selectors import model_version_get_usable

CHAT_PIPELINES = frozenset({"chatbot"})


def chat_model_get_usable(*, user, model_version_id: int) -> ModelVersion:
    """The model version, if this user may use it and it chats; Http404 otherwise."""
    from django.http import Http404

    model = model_version_get_usable(user=user, reference=str(model_version_id))
    if model.pipeline not in CHAT_PIPELINES:
        raise Http404
    return model


def chat_session_latest(*, user, model_version: ModelVersion) -> ChatSession | None:
    """The user's most recent conversation with this model version (the one a chat page resumes)."""
    return ChatSession.objects.filter(owner=user, model_version=model_version).first()


def chat_session_list(*, user, model_version: ModelVersion | None = None) -> QuerySet[ChatSession]:
    sessions = ChatSession.objects.filter(owner=user)
    return sessions.filter(model_version=model_version) if model_version is not None else sessions


def chat_message_list(*, session: ChatSession, limit: int = 200) -> list[ChatMessage]:
    """The last `limit` messages of a conversation, oldest first."""
    latest = ChatMessage.objects.filter(session=session).order_by("-created_at", "-id")[:limit]
    return list(reversed(latest))
