"""Conversations with chatbot model versions, kept so that a chat page can reload them."""

from django.conf import settings
from django.db import models


class ChatSession(models.Model):
    """One user's conversation with one model version."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_sessions")
    model_version = models.ForeignKey("registry.ModelVersion", on_delete=models.CASCADE, related_name="chat_sessions")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["owner", "model_version", "-updated_at"], name="chat_session_latest")]

    def __str__(self) -> str:
        return f"chat {self.pk} of {self.owner_id} with model {self.model_version_id}"


class ChatMessage(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        BOT = "bot"

    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=8, choices=Role.choices)
    text = models.TextField()
    latency_ms = models.FloatField(null=True, blank=True)  # a bot reply's, from the message to the whole reply
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["session", "created_at", "id"], name="chat_message_order")]

    def __str__(self) -> str:
        return f"{self.role}: {self.text[:40]}"
