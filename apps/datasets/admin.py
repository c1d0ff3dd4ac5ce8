from django.contrib import admin

from apps.datasets.models import Dataset


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "source", "owner", "status", "bytes", "created_at"]
    list_filter = ["status", "source", "kind"]
    search_fields = ["name", "owner__username", "sha256"]
    readonly_fields = ["sha256", "bytes", "stats", "error"]
