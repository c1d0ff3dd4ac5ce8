from django.contrib import admin, messages

from apps.accounts.errors import ApiError
from apps.experiments import services
from apps.experiments.models import Artifact, Experiment, LogLine, Metric, Run, RunStatusChange, WorkerHeartbeat


class RunStatusChangeInline(admin.TabularInline):
    model = RunStatusChange
    extra = 0
    can_delete = False
    readonly_fields = ["created_at", "attempt", "from_status", "to_status", "reason"]

    def has_add_permission(self, request, obj=None):
        return False  # the history is append-only, written by services


class ArtifactInline(admin.TabularInline):
    model = Artifact
    extra = 0
    fields = ["name", "kind", "bytes", "attempt", "created_at"]
    readonly_fields = fields


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "pipeline", "created_at"]
    list_filter = ["pipeline"]
    search_fields = ["name", "owner__username", "description"]


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["id", "pipeline", "experiment", "owner", "status", "progress", "attempt", "worker", "created_at"]
    list_filter = ["status", "pipeline", "queue"]
    search_fields = ["id", "experiment__name", "owner__username", "worker", "error"]
    readonly_fields = [
        "status", "progress", "progress_message", "current_step", "attempt", "worker", "heartbeat_at", "started_at",
        "finished_at", "error", "traceback", "code_version", "package_versions", "dataset_hash", "latest_metrics",
        "event_seq", "resumed_from_step", "cancel_requested",
    ]
    inlines = [RunStatusChangeInline, ArtifactInline]
    actions = ["cancel_runs", "rerun_runs"]

    @admin.action(description="Cancel selected runs")
    def cancel_runs(self, request, queryset):
        for run in queryset:
            try:
                services.run_cancel(run=run)
            except ApiError as error:
                self.message_user(request, error.message, messages.WARNING)

    @admin.action(description="Re-run selected runs (same pipeline, params and dataset)")
    def rerun_runs(self, request, queryset):
        for run in queryset.select_related("dataset", "experiment"):
            new = services.run_submit(
                user=run.owner, pipeline=run.pipeline, params=run.params,
                dataset=run.dataset.slug if run.dataset else None, experiment=run.experiment.name, queue=run.queue,
            )
            self.message_user(request, f"Run {run.pk} re-submitted as run {new.pk}.")


@admin.register(Metric)
class MetricAdmin(admin.ModelAdmin):
    list_display = ["run", "key", "step", "value", "time"]
    list_filter = ["key"]
    search_fields = ["run__id", "key"]


@admin.register(Artifact)
class ArtifactAdmin(admin.ModelAdmin):
    list_display = ["name", "run", "kind", "bytes", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name", "run__id"]


@admin.register(LogLine)
class LogLineAdmin(admin.ModelAdmin):
    list_display = ["run", "attempt", "time", "level", "message"]
    list_filter = ["level"]
    search_fields = ["message", "run__id"]


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ["hostname", "queues", "pid", "started_at", "last_seen"]
    search_fields = ["hostname"]
