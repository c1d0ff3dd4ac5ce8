"""Output shapes of runs, metrics, logs and artifacts; input shapes of a run submission and of a batch
of metric points."""

import math
import time

from django.conf import settings
from django.urls import reverse
from rest_framework import serializers

from apps.experiments.models import TERMINAL_STATUSES, Artifact, LogLine, Run
from apps.experiments.services import EXTERNAL_PIPELINE

PLATFORM_RUN_FIELDS = ("dataset", "parent", "queue", "gpus")  # what an external run has no use for


class RunSubmitSerializer(serializers.Serializer):
    """A run for a worker to train (a pipeline's name and params), or with `external` a run that a
    script outside the platform logs to and finishes (any pipeline name, free-form params)."""

    external = serializers.BooleanField(
        required=False, default=False,
        help_text="Create the run in state running for a client that trains elsewhere; no task is sent.",
    )
    pipeline = serializers.CharField(
        required=False, max_length=64, help_text=f"Required unless external (then any name, default {EXTERNAL_PIPELINE!r})."
    )
    params = serializers.JSONField(required=False, default=dict)
    dataset = serializers.JSONField(required=False, allow_null=True, default=None, help_text="A dataset id or 'builtin:<name>'.")
    experiment = serializers.CharField(required=False, allow_blank=True, allow_null=True, default=None)
    parent = serializers.IntegerField(required=False, allow_null=True, default=None)
    queue = serializers.CharField(required=False, allow_null=True, default=None)
    gpus = serializers.IntegerField(
        required=False, default=0,
        help_text="GPUs to train on; more than one trains under a distribution strategy on the training-multi queue.",
    )

    def validate(self, data):
        if data["external"]:
            unused = [name for name in PLATFORM_RUN_FIELDS if name in self.initial_data]
            if unused:
                raise serializers.ValidationError({name: ["Not used by external runs."] for name in unused})
            if not isinstance(data["params"], dict):
                raise serializers.ValidationError({"params": ["Expected a JSON object."]})
            data["pipeline"] = data.get("pipeline") or EXTERNAL_PIPELINE
        elif not data.get("pipeline"):
            raise serializers.ValidationError({"pipeline": ["This field is required."]})
        return data


class MetricPointsField(serializers.Field):
    """`[{"key", "value", "step", "timestamp"?}, ...]`, checked in one plain loop (a serializer per point
    would cost more than writing the points) and returned as columns: keys, steps, values, times_ms.

    key: a non-empty string of at most 100 characters; value: a finite number; step: an integer from 0;
    timestamp: milliseconds since the epoch, now when absent. Errors name the point: `metrics.3.value`.
    """

    FIELDS = frozenset({"key", "value", "step", "timestamp"})
    MAX_KEY_LENGTH = 100
    MAX_STEP = 2**31 - 1  # the column is a 32-bit integer
    MAX_TIMESTAMP_MS = 253402300799999  # the end of year 9999
    MAX_REPORTED_POINTS = 100  # a batch of 10,000 bad points answers with the first 100

    def to_internal_value(self, data):
        if not isinstance(data, list):
            raise serializers.ValidationError("Expected a list of points.")
        limit = settings.METRICS_MAX_POINTS_PER_REQUEST
        if len(data) > limit:
            raise serializers.ValidationError(f"Expected at most {limit} points; got {len(data)}.")
        now_ms = int(time.time() * 1000)
        keys, steps, values, times_ms = [], [], [], []
        errors: dict[str, dict | list] = {}
        fields, max_key_length, max_step, max_timestamp = self.FIELDS, self.MAX_KEY_LENGTH, self.MAX_STEP, self.MAX_TIMESTAMP_MS
        for index, point in enumerate(data):
            # Exact type checks: to Python a bool is an int, to a client it is not a number.
            if type(point) is dict:
                key, step, timestamp = point.get("key"), point.get("step"), point.get("timestamp")
                value = _finite_float(point.get("value"))
                if (
                    type(key) is str and 0 < len(key) <= max_key_length and "\x00" not in key
                    and value is not None
                    and type(step) is int and 0 <= step <= max_step
                    and (timestamp is None or (type(timestamp) in (int, float) and 0 <= timestamp <= max_timestamp))
                    and point.keys() <= fields
                ):
                    keys.append(key)
                    steps.append(step)
                    values.append(value)
                    times_ms.append(now_ms if timestamp is None else int(timestamp))
                    continue
                errors[str(index)] = self._point_errors(point)
            else:
                errors[str(index)] = ["Expected an object with key, value, step and optionally timestamp."]
            if len(errors) == self.MAX_REPORTED_POINTS:
                break
        if errors:
            raise serializers.ValidationError(errors)
        return {"keys": keys, "steps": steps, "values": values, "times_ms": times_ms}

    def _point_errors(self, point: dict) -> dict[str, list[str]]:
        """What is wrong with a point that failed the fast check, field by field."""
        errors = {}
        key, step, timestamp = point.get("key"), point.get("step"), point.get("timestamp")
        if type(key) is not str or not 0 < len(key) <= self.MAX_KEY_LENGTH:
            errors["key"] = [f"Expected a non-empty string of at most {self.MAX_KEY_LENGTH} characters."]
        elif "\x00" in key:
            errors["key"] = ["A NUL character cannot be stored."]
        if _finite_float(point.get("value")) is None:
            errors["value"] = ["Expected a finite number."]
        if type(step) is not int or not 0 <= step <= self.MAX_STEP:
            errors["step"] = [f"Expected an integer from 0 to {self.MAX_STEP}."]
        if timestamp is not None and (
            type(timestamp) not in (int, float) or not 0 <= timestamp <= self.MAX_TIMESTAMP_MS
        ):
            errors["timestamp"] = ["Expected milliseconds since the epoch, from 0 to the end of year 9999."]
        for name in sorted(point.keys() - self.FIELDS):
            errors[name] = ["Unknown field."]
        return errors

    def to_representation(self, value):
        return value


def _finite_float(value) -> float | None:
    """`value` as a finite float, or None when it is not a finite number (a bool, a string, 1e400, ...)."""
    if type(value) is float:
        return value if math.isfinite(value) else None
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            return None
    return None


class MetricBatchSerializer(serializers.Serializer):
    metrics = MetricPointsField(help_text="Up to 10,000 points: [{key, value, step, timestamp (ms, optional)}].")


class RunFinishSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=sorted(TERMINAL_STATUSES))
    error = serializers.CharField(required=False, allow_blank=True, default="")


class RunSerializer(serializers.ModelSerializer):
    experiment = serializers.CharField(source="experiment.name")
    dataset = serializers.SerializerMethodField()
    metrics = serializers.JSONField(source="latest_metrics")
    model_version = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = [
            "id", "pipeline", "experiment", "dataset", "params", "status", "progress", "progress_message",
            "current_step", "attempt", "cancel_requested", "queue", "gpus", "external", "worker", "metrics", "error",
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
