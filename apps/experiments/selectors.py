"""Run reads. Ownership is enforced here, once: a user sees only their own runs (404 otherwise)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.db.models import Count, F, FloatField, Max, Q, QuerySet
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Cast
from django.shortcuts import get_object_or_404
from django.utils import timezone

from apps.accounts.errors import ApiError
from apps.experiments.models import Artifact, Experiment, LogLine, Metric, Run, RunStatus, WorkerHeartbeat


def run_list(*, user, filters: dict | None = None) -> QuerySet[Run]:
    filters = filters or {}
    return _ordered(_run_filtered(user=user, filters=filters), _run_order(filters.get("order_by") or "-created"))


def _run_filtered(*, user, filters: dict) -> QuerySet[Run]:
    runs = Run.objects.filter(owner=user).select_related("experiment", "dataset", "model_version")
    if filters.get("pipeline"):
        runs = runs.filter(pipeline=filters["pipeline"])
    if filters.get("status"):
        if filters["status"] not in RunStatus.values:
            raise ApiError("Invalid filter.", {"status": [f"Expected one of {RunStatus.values}."]})
        runs = runs.filter(status=filters["status"])
    if filters.get("experiment"):
        runs = runs.filter(experiment__name=filters["experiment"])
    return runs


@dataclass(frozen=True)
class RunOrder:
    """An order of the runs list: by `field` (a column, or the annotation of a metric's latest value),
    then by id, so that every run has one place in it."""

    name: str  # as asked: created, -created, metric:<key> or -metric:<key>
    field: str
    descending: bool
    id_descending: bool
    metric_key: str | None = None  # runs without the metric come last, whichever the direction

    def position(self, run: Run) -> tuple:
        """Where `run` stands in this order, as JSON-friendly values."""
        value = getattr(run, self.field)
        return (value.isoformat() if self.metric_key is None else value), run.pk


def _run_order(order_by: str) -> RunOrder:
    """`created`, `-created`, `metric:<key>` or `-metric:<key>` (by the metric's latest value)."""
    descending = order_by.startswith("-")
    field = order_by.removeprefix("-")
    if field == "created":
        return RunOrder(order_by, "created_at", descending=descending, id_descending=descending)
    if field.startswith("metric:") and len(field) > len("metric:"):
        key = field.removeprefix("metric:")
        return RunOrder(order_by, "order_value", descending=descending, id_descending=True, metric_key=key)
    raise ApiError("Invalid ordering.", {"order_by": ["Expected created, -created, metric:<key> or -metric:<key>."]})


def _ordered(runs: QuerySet[Run], order: RunOrder, *, backwards: bool = False) -> QuerySet[Run]:
    """`runs` in `order`, or in the reverse order when going backwards (to a previous page)."""
    descending, id_descending = order.descending != backwards, order.id_descending != backwards
    by_id = "-id" if id_descending else "id"
    if order.metric_key is None:
        # Plain ASC/DESC, which the (owner, ..., created_at, id) indexes can be scanned in, either way.
        return runs.order_by(f"{'-' if descending else ''}{order.field}", by_id)
    runs = runs.annotate(order_value=Cast(KeyTransform(order.metric_key, "latest_metrics"), FloatField()))
    nulls = {"nulls_first": True} if backwards else {"nulls_last": True}
    value = F("order_value")
    return runs.order_by(value.desc(**nulls) if descending else value.asc(**nulls), by_id)


# Keyset pagination ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunPage:
    runs: list[Run]
    next_cursor: str | None
    previous_cursor: str | None


def run_page(*, user, filters: dict | None = None, cursor: str | None = None, limit: int = 50) -> RunPage:
    """A page of `run_list` by keyset: the `limit` runs after the cursor's run in the list's order (or
    before it, for a cursor to a previous page). No OFFSET and no COUNT: with the (owner, ...,
    created_at, id) indexes the thousandth page costs what the first does."""
    filters = filters or {}
    order = _run_order(filters.get("order_by") or "-created")
    runs = _run_filtered(user=user, filters=filters)
    backwards = False
    if cursor:
        backwards, value, run_id = _cursor_decode(cursor, order)
        runs = _ordered(runs, order, backwards=backwards).filter(_beyond(order, value, run_id, backwards=backwards))
    else:
        runs = _ordered(runs, order)
    rows = _page_rows(runs, order, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
    if not rows:
        return RunPage(runs=[], next_cursor=None, previous_cursor=None)
    has_next = more if not backwards else True
    has_previous = more if backwards else cursor is not None
    return RunPage(
        runs=rows,
        next_cursor=_cursor_encode(order, rows[-1], backwards=False) if has_next else None,
        previous_cursor=_cursor_encode(order, rows[0], backwards=True) if has_previous else None,
    )


def _page_rows(runs: QuerySet[Run], order: RunOrder, count: int) -> list[Run]:
    """The first `count` of `runs`. By a metric, no index gives the order: every run of the user is
    sorted, so the sort reads the runs table alone, and only the page's rows are then joined."""
    if order.metric_key is None:
        return list(runs[:count])
    positions = list(runs.values_list("pk", "order_value")[:count])
    rows = Run.objects.select_related("experiment", "dataset", "model_version").in_bulk([pk for pk, _ in positions])
    for pk, value in positions:
        rows[pk].order_value = value
    return [rows[pk] for pk, _ in positions]


def _beyond(order: RunOrder, value, run_id: int, *, backwards: bool) -> Q:
    """The runs that come after position (value, run_id) in `order` (before it, going backwards)."""
    field = order.field
    descending, id_descending = order.descending != backwards, order.id_descending != backwards
    later = Q(**{f"{field}__{'lt' if descending else 'gt'}": value}) if value is not None else None
    same_later_id = Q(**{field: value, f"id__{'lt' if id_descending else 'gt'}": run_id})
    if order.metric_key is None:
        # The redundant bound is what lets the database start its index scan at the position.
        return Q(**{f"{field}__{'lte' if descending else 'gte'}": value}) & (later | same_later_id)
    # Runs without the metric sort last going forwards, so first going backwards.
    missing = Q(**{f"{field}__isnull": True})
    if value is None:
        missing_later_id = missing & Q(**{f"id__{'lt' if id_descending else 'gt'}": run_id})
        return ~missing | missing_later_id if backwards else missing_later_id
    return (later | same_later_id) if backwards else (later | same_later_id | missing)


def _cursor_encode(order: RunOrder, run: Run, *, backwards: bool) -> str:
    value, run_id = order.position(run)
    text = json.dumps([order.name, value, run_id, backwards], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _cursor_decode(cursor: str, order: RunOrder) -> tuple[bool, object, int]:
    """(backwards, value, run id) of a cursor made for `order`; a 400 naming `cursor` otherwise."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        name, value, run_id, backwards = json.loads(text)
        if name != order.name or type(run_id) is not int or type(backwards) is not bool:
            raise ValueError(name)
        if order.metric_key is None:
            value = datetime.fromisoformat(value)
            if value.tzinfo is None:
                raise ValueError(value)
        elif value is not None and type(value) not in (int, float):
            raise ValueError(value)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise ApiError("Invalid cursor.", {"cursor": ["Use the cursor of a next or previous link, with the same order_by."]}) from None
    return backwards, value, run_id


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


def run_event_position(*, user, run_id: int) -> tuple[int, str] | None:
    """The run's last event `seq` and its status; None if the user has no such run."""
    return run_list(user=user).filter(pk=run_id).values_list("event_seq", "status").first()


# Reads of the web pages ----------------------------------------------------------------------------


def experiment_list(*, user) -> QuerySet[Experiment]:
    """The user's experiments, with how many runs each holds and when the latest was created."""
    return (
        Experiment.objects.filter(owner=user)
        .annotate(run_count=Count("runs"), last_run_at=Max("runs__created_at"))
        .order_by(F("last_run_at").desc(nulls_last=True), "-id")
    )


def run_log_tail(*, run: Run, limit: int = 200) -> list[LogLine]:
    """The run's last `limit` log lines, oldest first."""
    return list(reversed(LogLine.objects.filter(run=run).order_by("-id")[:limit]))


def worker_list_alive() -> QuerySet[WorkerHeartbeat]:
    """Workers that reported within WORKER_ALIVE_WITHIN seconds, and the queues they consume."""
    alive_since = timezone.now() - timedelta(seconds=settings.WORKER_ALIVE_WITHIN)
    return WorkerHeartbeat.objects.filter(last_seen__gte=alive_since).order_by("hostname")


def queue_depths() -> dict[str, int] | None:
    """Messages waiting in each configured Celery queue (the broker's list of that name), or None when
    Redis does not answer. Messages a worker has taken but not finished are not counted."""
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        with client.pipeline(transaction=False) as pipe:
            for queue in settings.QUEUES:
                pipe.llen(queue)
            return dict(zip(settings.QUEUES, pipe.execute(), strict=True))
    except redis.RedisError:
        return None
    finally:
        client.close()


def run_status_counts(*, user) -> dict[str, int]:
    """How many of the user's runs are in each status."""
    counts = dict(Run.objects.filter(owner=user).order_by().values_list("status").annotate(count=Count("id")))
    return {status: counts.get(status, 0) for status in RunStatus.values}
