"""Datasets: uploads (validated on the `default` queue) and built-in offline datasets."""

from django.conf import settings
from django.db import models


class Dataset(models.Model):
    class Source(models.TextChoices):
        UPLOAD = "upload"
        BUILTIN = "builtin"
        GENERATED = "generated"

    class Status(models.TextChoices):
        VALIDATING = "validating"
        READY = "ready"
        INVALID = "invalid"

    # Built-in datasets have no owner: every signed-in user may train on them.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="datasets"
    )
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=64)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.UPLOAD)
    storage_path = models.CharField(max_length=500, blank=True)
    bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    stats = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.VALIDATING)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["name"], condition=models.Q(source="builtin"), name="unique_builtin_dataset_name"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}, {self.status})"

    @property
    def slug(self) -> str:
        return f"builtin:{self.name}" if self.source == self.Source.BUILTIN else str(self.pk)
