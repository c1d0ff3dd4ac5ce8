"""Experiments and runs: the tracking store.

A Run's status is a state machine (queued -> running -> succeeded | failed | cancelled) with an
append-only history. Every write an attempt makes is conditional on its (run, attempt), so an old
attempt that wakes up late cannot write over a newer one.
"""

from django.conf import settings
from django.db import models


class Experiment(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="experiments")
    name = models.CharField(max_length=200)
    pipeline = models.CharField(max_length=64)
    description = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="unique_experiment_per_owner")]

    def __str__(self) -> str:
        return self.name


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class Run(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="runs")
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="runs")
    pipeline = models.CharField(max_length=64)
    dataset = models.ForeignKey(
        "datasets.Dataset", null=True, blank=True, on_delete=models.PROTECT, related_name="runs"
    )
    params = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    cancel_requested = models.BooleanField(default=False)
    progress = models.FloatField(default=0.0)  # 0..1
    progress_message = models.CharField(max_length=200, blank=True)
    current_step = models.IntegerField(default=0)
    queue = models.CharField(max_length=32, default="training")
    gpus = models.PositiveSmallIntegerField(default=0)  # GPUs the run asks for; > 1 trains under a distribution strategy
    # Created in state running by a script outside the platform, which logs its metrics over REST and
    # finishes it; no task, no worker, no heartbeat (the reaper leaves it alone).
    external = models.BooleanField(default=False)
    worker = models.CharField(max_length=200, blank=True)
    celery_id = models.CharField(max_length=64, blank=True)
    attempt = models.PositiveIntegerField(default=1)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)  # when its task message was last sent
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    # Reproducibility
    seed = models.BigIntegerField(null=True, blank=True)
    code_version = models.CharField(max_length=64, blank=True)
    package_versions = models.JSONField(default=dict, blank=True)
    dataset_hash = models.CharField(max_length=64, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    resumed_from_step = models.IntegerField(null=True, blank=True)
    latest_metrics = models.JSONField(default=dict, blank=True)  # key -> last value, for listings
    # key -> step of latest_metrics[key], for metrics logged out of order over REST (external runs)
    latest_metric_steps = models.JSONField(default=dict, blank=True)
    summary = models.JSONField(default=dict, blank=True)  # what the pipeline says about its training
    event_seq = models.BigIntegerField(default=0)  # last websocket event sequence number

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The runs list pages by keyset on (created_at, id), whole or filtered by status or experiment.
            models.Index(fields=["owner", "-created_at", "-id"]),
            models.Index(fields=["owner", "status", "-created_at", "-id"]),
            models.Index(fields=["owner", "experiment", "-created_at", "-id"]),
            models.Index(fields=["owner", "pipeline", "-created_at"]),
            models.Index(fields=["status", "heartbeat_at"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__gte=0) & models.Q(progress__lte=1), name="run_progress_range"
            ),
            models.CheckConstraint(condition=models.Q(status__in=RunStatus.values), name="run_status_valid"),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.pipeline}, {self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


class RunStatusChange(models.Model):
    """Append-only history of a run's status."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="status_changes")
    attempt = models.PositiveIntegerField()
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.from_status or '-'} -> {self.to_status}"


class Metric(models.Model):
    # No index of its own: the unique (run, key, step) index serves lookups by run, and one index fewer
    # makes batched inserts cheaper.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="metrics", db_index=False)
    key = models.CharField(max_length=100)
    step = models.IntegerField()
    value = models.FloatField()
    time = models.DateTimeField()

    class Meta:
        ordering = ["key", "step"]
        constraints = [models.UniqueConstraint(fields=["run", "key", "step"], name="unique_metric_step")]

    def __str__(self) -> str:
        return f"{self.key}[{self.step}]={self.value}"


class LogLine(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="log_lines")
    attempt = models.PositiveIntegerField()
    time = models.DateTimeField()
    level = models.CharField(max_length=16, default="info")
    message = models.TextField()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["run", "id"])]


class Artifact(models.Model):
    class Kind(models.TextChoices):
        MODEL = "model"
        CHECKPOINT = "checkpoint"
        PLOT = "plot"
        SAMPLES = "samples"
        VIDEO = "video"
        REPORT = "report"
        LOG = "log"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="artifacts")
    attempt = models.PositiveIntegerField(default=1)
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    storage_path = models.CharField(max_length=500)
    bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["run", "name"], name="unique_artifact_name_per_run")]

    def __str__(self) -> str:
        return self.name


class WorkerHeartbeat(models.Model):
    """One row per live Celery worker, refreshed every few seconds by the worker itself."""

    hostname = models.CharField(max_length=200, unique=True)
    queues = models.JSONField(default=list)
    pid = models.IntegerField()
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.hostname
