"""The model registry: versions of trained models, their aliases and who may use them."""

from django.conf import settings
from django.db import models


class ModelVersion(models.Model):
    class Source(models.TextChoices):
        RUN = "run"
        UPLOAD = "upload"

    class Visibility(models.TextChoices):
        PRIVATE = "private"
        SHARED = "shared"
        PUBLIC = "public"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="model_versions")
    name = models.CharField(max_length=200)
    version = models.PositiveIntegerField()
    pipeline = models.CharField(max_length=64)
    run = models.OneToOneField(
        "experiments.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="model_version"
    )
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.RUN)
    artifact = models.ForeignKey(
        "experiments.Artifact", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    storage_path = models.CharField(max_length=500)  # the model archive in the artifact store
    sha256 = models.CharField(max_length=64, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    visibility = models.CharField(max_length=16, choices=Visibility.choices, default=Visibility.PRIVATE)
    shared_with = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="models_shared_with_me")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name", "version"], name="unique_model_version"),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class ModelAlias(models.Model):
    """A name such as `production` pointing at one version; unique per owner and model name."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="aliases")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=200)  # the model's name, copied so the constraint can see it
    alias = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "name", "alias"], name="unique_alias_per_model"),
        ]

    def __str__(self) -> str:
        return f"{self.name}@{self.alias}"


class Prediction(models.Model):
    """A prediction that takes long by nature (a video): answered 202 and polled."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="predictions")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="predictions")
    inputs = models.JSONField(default=dict)  # JSON fields, and storage paths of uploaded files
    outputs = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
