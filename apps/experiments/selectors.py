"""Run reads. Ownership is enforced here, once: a user sees only their own runs (404 otherwise)."""

from __future__ import annotations

from django.db.models import FloatField, QuerySet
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Cast
from django.shortcuts import get_object_or_404

from apps.accounts.errors import ApiError
from apps.experiments.models import Artifact, LogLine, Metric, Run, RunStatus


def run_list(*, user, filters: dict | None = None) -> QuerySet[Run]:
    filters = filters or {}
    runs = Run.objects.filter(owner=user).select_related("experiment", "dataset", "model_version")
    if filters.get("pipeline"):
        runs = runs.filter(pipeline=filters["pipeline"])
    if filters.get("status"):
        if filters["status"] not in RunStatus.values:
            raise ApiError("Invalid filter.", {"status": [f"Expected one of {RunStatus.values}."]})
        runs = runs.filter(status=filters["status"])
    if filters.get("experiment"):
        runs = runs.filter(experiment__name=filters["experiment"])
    return _ordered(runs, filters.get("order_by") or "-created")


def _ordered(runs: QuerySet[Run], order_by: str) -> QuerySet[Run]:
    """`created`, `-created`, `metric:<key>` or `-metric:<key>` (by the metric's latest value)."""
    descending = order_by.startswith("-")
    field = order_by.lstrip("-")
    if field == "created":
        return runs.order_by(f"{'-' if descending else ''}created_at", f"{'-' if descending else ''}id")
    if field.startswith("metric:") and len(field) > len("metric:"):
        key = field.removeprefix("metric:")
        runs = runs.annotate(order_value=Cast(KeyTransform(key, "latest_metrics"), FloatField()))
        value = runs.query.annotations["order_value"]
        ordering = value.desc(nulls_last=True) if descending else value.asc(nulls_last=True)
        return runs.order_by(ordering, "-id")
    raise ApiError("Invalid ordering.", {"order_by": ["Expected created, -created, metric:<key> or -metric:<key>."]})


def run_get_for_user(*, user, run_id: int) -> Run:
    return get_object_or_404(run_list(user=user), pk=run_id)


def run_metric_history(*, run: Run) -> dict[str, list[dict]]:
    history: dict[str, list[dict]] = {}
    for key, step, value, time in Metric.objects.filter(run=run).order_by("key", "step").values_list(
        "key", "step", "value", "time"
    ):
        history.setdefault(key, []).append({"step": step, "value": value, "time": time.isoformat()})
    return history


def run_log_lines(*, run: Run, after_id: int = 0, limit: int = 1000) -> QuerySet[LogLine]:
    return LogLine.objects.filter(run=run, id__gt=after_id).order_by("id")[:limit]


def run_artifacts(*, run: Run) -> QuerySet[Artifact]:
    return run.artifacts.exclude(kind=Artifact.Kind.CHECKPOINT).order_by("created_at", "id")


def artifact_get_for_user(*, user, artifact_id: int) -> Artifact:
    return get_object_or_404(Artifact.objects.filter(run__owner=user), pk=artifact_id)


def run_snapshot(*, run: Run) -> dict:
    """What a websocket subscriber gets on connect: enough to draw the run page from scratch."""
    return {
        "type": "snapshot",
        "seq": run.event_seq,
        "run": run.pk,
        "status": run.status,
        "attempt": run.attempt,
        "progress": run.progress,
        "progress_message": run.progress_message,
        "metrics": run_metric_history(run=run),
        "error": run.error,
    }
