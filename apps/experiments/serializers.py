"""Output shapes of runs, metrics, logs and artifacts; input shape of a run submission."""

from django.urls import reverse
from rest_framework import serializers

from apps.experiments.models import Artifact, LogLine, Run


class RunSubmitSerializer(serializers.Serializer):
    pipeline = serializers.CharField()
    params = serializers.JSONField(required=False, default=dict)
    dataset = serializers.JSONField(required=False, allow_null=True, default=None, help_text="A dataset id or 'builtin:<name>'.")
    experiment = serializers.CharField(required=False, allow_blank=True, allow_null=True, default=None)
    parent = serializers.IntegerField(required=False, allow_null=True, default=None)
    queue = serializers.CharField(required=False, allow_null=True, default=None)


class RunSerializer(serializers.ModelSerializer):
    experiment = serializers.CharField(source="experiment.name")
    dataset = serializers.SerializerMethodField()
    metrics = serializers.JSONField(source="latest_metrics")
    model_version = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = [
            "id", "pipeline", "experiment", "dataset", "params", "status", "progress", "progress_message",
            "current_step", "attempt", "cancel_requested", "queue", "worker", "metrics", "error",
            "created_at", "started_at", "finished_at", "heartbeat_at", "seed", "code_version",
            "package_versions", "dataset_hash", "parent", "resumed_from_step", "summary", "model_version",
        ]

    def get_dataset(self, run) -> str | None:
        return run.dataset.slug if run.dataset else None

    def get_model_version(self, run) -> dict | None:
        model = getattr(run, "model_version", None)
        if model is None:
            return None
        return {"id": model.pk, "name": model.name, "version": model.version}


class LogLineSerializer(serializers.ModelSerializer):
    class Meta:
        model = LogLine
        fields = ["id", "attempt", "time", "level", "message"]


class ArtifactSerializer(serializers.ModelSerializer):
    size = serializers.IntegerField(source="bytes")
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Artifact
        fields = ["id", "name", "kind", "size", "sha256", "metadata", "created_at", "download_url"]

    def get_download_url(self, artifact) -> str:
        path = reverse("artifact-download", args=[artifact.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path
