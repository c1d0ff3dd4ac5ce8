from django.contrib import admin

from apps.chat.models import ChatMessage, ChatSession


class ChatMessageInline(admin.TabularInline):
    model = ChatMessage
    extra = 0
    fields = ["role", "text", "latency_ms", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(ChatSession)
class ChatSessionAdmin(admin.ModelAdmin):
    list_display = ["id", "owner", "model_version", "created_at", "updated_at"]
    search_fields = ["owner__username", "model_version__name"]
    inlines = [ChatMessageInline]
