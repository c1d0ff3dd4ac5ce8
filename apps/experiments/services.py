"""Run writes: submit, claim, report, finish, cancel, delete; external runs and their metric batches.

Every write made on behalf of an attempt is conditional on (run, attempt) and on the status it expects,
so a duplicate task message claims nothing and an attempt that lost its run (reaped while it was
paused, say) cannot write over the one that replaced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.utils import timezone

from apps.accounts.errors import ApiError
from apps.datasets.models import Dataset
from apps.datasets.services import builtin_datasets_ensure
from apps.experiments.events import events_number, events_publish
from apps.experiments.models import (
    TERMINAL_STATUSES,
    Artifact,
    Experiment,
    LogLine,
    Metric,
    Run,
    RunStatus,
    RunStatusChange,
)
from dlsite.jobs import enqueue
from worker.pipelines.base import ParamsError, get_pipeline, pipeline_names

TRAIN_TASK = "worker.tasks.run_train"
MULTI_GPU_QUEUE = "training-multi"  # workers that see all of their host's GPUs (runs with gpus > 1)
EXTERNAL_PIPELINE = "external"  # the pipeline name of an external run that names none


# Submit --------------------------------------------------------------------------------------------


def run_submit(
    *,
    user,
    pipeline: str,
    params: dict | None = None,
    dataset: str | int | None = None,
    experiment: str | None = None,
    parent: int | None = None,
    queue: str | None = None,
    gpus: int = 0,
) -> Run:
    """Validate everything, then create a queued run and send it to its queue after commit.

    Without an explicit queue, a run that asks for more than one GPU goes to `training-multi`.
    """
    try:
        pipeline_object = get_pipeline(pipeline)
    except KeyError:
        raise ApiError(
            f"Unknown pipeline {pipeline!r}.", {"pipeline": [f"Expected one of {pipeline_names()}."]}
        ) from None
    try:
        resolved = pipeline_object.resolve_params(params)
    except ParamsError as error:
        raise ApiError("Invalid parameters.", _params_errors(error)) from None
    dataset_row = _dataset_for_run(user=user, pipeline=pipeline_object, reference=dataset)
    if dataset_row is not None:
        try:
            pipeline_object.check_dataset(
                resolved, kind=dataset_row.kind, stats=_dataset_stats(pipeline=pipeline_object, dataset=dataset_row)
            )
        except ParamsError as error:
            raise ApiError("Invalid parameters for this dataset.", _params_errors(error)) from None
    parent_run = None
    if parent is not None:
        parent_run = Run.objects.filter(owner=user, pk=parent).first()
        if parent_run is None:
            raise ApiError("Unknown parent run.", {"parent": [f"No run {parent} of yours."]})
        if parent_run.pipeline != pipeline:
            raise ApiError("Parent run is of another pipeline.", {"parent": [f"Run {parent} is a {parent_run.pipeline} run."]})
    if isinstance(gpus, bool) or not isinstance(gpus, int) or not 0 <= gpus <= settings.MAX_GPUS_PER_RUN:
        raise ApiError("Invalid GPU count.", {"gpus": [f"Expected an integer from 0 to {settings.MAX_GPUS_PER_RUN}."]})
    queue = queue or (MULTI_GPU_QUEUE if gpus > 1 else "training")
    if queue not in settings.QUEUES:
        raise ApiError("Unknown queue.", {"queue": [f"Expected one of {list(settings.QUEUES)}."]})

    with transaction.atomic():
        experiment_row = _experiment_for_run(user=user, name=experiment or pipeline, pipeline=pipeline)
        run = Run.objects.create(
            owner=user,
            experiment=experiment_row,
            pipeline=pipeline,
            dataset=dataset_row,
            params=resolved.model_dump(mode="json"),
            seed=getattr(resolved, "seed", None),
            parent=parent_run,
            queue=queue,
            gpus=gpus,
            status=RunStatus.QUEUED,
        )
        RunStatusChange.objects.create(run=run, attempt=run.attempt, to_status=RunStatus.QUEUED, reason="submitted")
        run_enqueue(run=run)
    return run


def _params_errors(error: ParamsError) -> dict[str, list[str]]:
    # Errors about one parameter are keyed `params.<name>`; about the whole object, `params`.
    return {("params" if key == "params" else f"params.{key}"): value for key, value in error.errors.items()}


def _dataset_stats(*, pipeline, dataset: Dataset) -> dict:
    """What the dataset's inspection found; for a built-in, the statistics its pipeline declares."""
    if dataset.source == Dataset.Source.BUILTIN:
        builtin = pipeline.builtin_dataset(dataset.name)
        return {**(builtin.stats if builtin else {}), **dataset.stats}
    return dataset.stats


def run_enqueue(*, run: Run) -> None:
    """Send the run's current attempt to its queue after commit (again, if its message was lost)."""
    Run.objects.filter(pk=run.pk).update(enqueued_at=timezone.now())
    enqueue(TRAIN_TASK, run.pk, run.attempt, queue=run.queue)


def _experiment_for_run(*, user, name: str, pipeline: str) -> Experiment:
    experiment, _ = Experiment.objects.get_or_create(owner=user, name=name, defaults={"pipeline": pipeline})
    if experiment.pipeline != pipeline:
        raise ApiError(
            "Experiment belongs to another pipeline.",
            {"experiment": [f"Experiment {experiment.name!r} holds {experiment.pipeline} runs."]},
        )
    return experiment


def _dataset_for_run(*, user, pipeline, reference: str | int | None) -> Dataset | None:
    if reference in (None, ""):
        if pipeline.default_dataset is None:
            return None
        reference = f"builtin:{pipeline.default_dataset}"
    if isinstance(reference, str) and reference.startswith("builtin:"):
        name = reference.removeprefix("builtin:")
        if pipeline.builtin_dataset(name) is None:
            choices = [f"builtin:{d.name}" for d in pipeline.builtin_datasets]
            raise ApiError("Unknown built-in dataset.", {"dataset": [f"{reference!r} is not one of {choices}."]})
        row = Dataset.objects.filter(source=Dataset.Source.BUILTIN, name=name).first()
        return row or next(d for d in builtin_datasets_ensure() if d.name == name)
    try:
        dataset_id = int(reference)
    except (TypeError, ValueError):
        raise ApiError("Invalid dataset.", {"dataset": ["Expected a dataset id or 'builtin:<name>'."]}) from None
    row = Dataset.objects.filter(owner=user, pk=dataset_id).first()
    if row is None:
        raise ApiError("Unknown dataset.", {"dataset": [f"No dataset {dataset_id} of yours."]})
    if row.status != Dataset.Status.READY:
        raise ApiError("Dataset not ready.", {"dataset": [f"Dataset {dataset_id} is {row.status}: {row.error}".strip(": ")]})
    if pipeline.dataset_kind(row.kind) is None:
        kinds = [kind.name for kind in pipeline.dataset_kinds]
        raise ApiError("Wrong dataset kind.", {"dataset": [f"Dataset {dataset_id} is {row.kind!r}; {pipeline.name} takes {kinds}."]})
    return row


# Status transitions --------------------------------------------------------------------------------


def _transition(
    *, run_id: int, attempt: int, from_statuses, to_status: str, reason: str = "", **fields
) -> bool:
    """Move the run's status if it is still (attempt, one of from_statuses); True if it moved.

    Call inside a transaction: the history row and the status event belong to the same commit.
    """
    current = Run.objects.filter(pk=run_id, attempt=attempt, status__in=from_statuses).values_list("status", flat=True).first()
    if current is None:
        return False
    moved = Run.objects.filter(pk=run_id, attempt=attempt, status=current).update(status=to_status, **fields)
    if not moved:
        return False
    RunStatusChange.objects.create(run_id=run_id, attempt=attempt, from_status=current, to_status=to_status, reason=reason)
    event = {"type": "status", "status": to_status, "attempt": attempt}
    if reason:
        event["reason"] = reason
    events_publish(run_id=run_id, events=[event])
    return True


def run_claim(*, run_id: int, attempt: int, worker: str, code_version: str, package_versions: dict) -> Run | None:
    """queued -> running for this attempt; None when someone else has it (a duplicate message)."""
    now = timezone.now()
    with transaction.atomic():
        claimed = _transition(
            run_id=run_id, attempt=attempt, from_statuses=[RunStatus.QUEUED], to_status=RunStatus.RUNNING,
            reason=f"claimed by {worker}", worker=worker, started_at=now, heartbeat_at=now,
            code_version=code_version, package_versions=package_versions,
        )
    return Run.objects.select_related("dataset", "owner", "experiment").get(pk=run_id) if claimed else None


def run_finish(
    *, run_id: int, attempt: int, status: str, reason: str = "", error: str = "", traceback: str = "",
) -> bool:
    """running -> a terminal status for this attempt."""
    assert status in TERMINAL_STATUSES, status
    with transaction.atomic():
        return _transition(
            run_id=run_id, attempt=attempt, from_statuses=[RunStatus.RUNNING], to_status=status, reason=reason,
            finished_at=timezone.now(), error=error, traceback=traceback,
            **({"progress": 1.0} if status == RunStatus.SUCCEEDED else {}),
        )


def run_succeed(*, run_id: int, attempt: int, model_artifact_id: int | None, metrics: dict, summary: dict | None = None
) -> bool:
    """running -> succeeded, and the trained model becomes the next version of its name, atomically."""
    from apps.registry.services import model_version_create_from_run

    with transaction.atomic():
        if not run_finish(run_id=run_id, attempt=attempt, status=RunStatus.SUCCEEDED, reason="training finished"):
            return False
        Run.objects.filter(pk=run_id).update(summary=summary or {})
        run = Run.objects.select_related("experiment", "owner").get(pk=run_id)
        if model_artifact_id is not None:
            model_version_create_from_run(run=run, artifact=Artifact.objects.get(pk=model_artifact_id), metrics=metrics)
    return True


def run_requeue(*, run_id: int, attempt: int, reason: str) -> bool:
    """running -> queued as attempt + 1 (its worker was lost); the old attempt is fenced out."""
    with transaction.atomic():
        moved = Run.objects.filter(pk=run_id, attempt=attempt, status=RunStatus.RUNNING).update(
            status=RunStatus.QUEUED, attempt=attempt + 1, worker="", heartbeat_at=None
        )
        if not moved:
            return False
        RunStatusChange.objects.create(
            run_id=run_id, attempt=attempt + 1, from_status=RunStatus.RUNNING, to_status=RunStatus.QUEUED, reason=reason
        )
        events_publish(run_id=run_id, events=[{"type": "status", "status": RunStatus.QUEUED, "attempt": attempt + 1, "reason": reason}])
        run_enqueue(run=Run.objects.get(pk=run_id))
    return True


def run_set_dataset_hash(*, run_id: int, attempt: int, dataset_hash: str) -> None:
    Run.objects.filter(pk=run_id, attempt=attempt).update(dataset_hash=dataset_hash)


def run_cancel(*, run: Run) -> Run:
    """Queued runs stop at once; running ones at their next batch (the worker sees the flag).

    Decided on the row as it is now, not on `run` as it was read: a worker may have claimed the run
    (or the reaper re-queued it) since, and the cancel must still reach it.
    """
    with transaction.atomic():
        # Locked, so that no claim or re-queue slips between reading the attempt and acting on it.
        attempt = Run.objects.select_for_update().filter(pk=run.pk).values_list("attempt", flat=True).get()
        cancelled = _transition(
            run_id=run.pk, attempt=attempt, from_statuses=[RunStatus.QUEUED], to_status=RunStatus.CANCELLED,
            reason="cancelled before it started", finished_at=timezone.now(), cancel_requested=True,
        )
        if not cancelled and run.external:
            # No worker watches an external run's flag: it stops now, and its client's next write gets a 409.
            cancelled = _transition(
                run_id=run.pk, attempt=attempt, from_statuses=[RunStatus.RUNNING], to_status=RunStatus.CANCELLED,
                reason="cancelled by the user", finished_at=timezone.now(), cancel_requested=True,
            )
        if not cancelled:
            if not Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(cancel_requested=True):
                run.refresh_from_db()
                raise ApiError(f"Run {run.pk} already {run.status}.", status_code=409)
            events_publish(run_id=run.pk, events=[{"type": "log", "level": "info", "message": "cancel requested"}])
    run.refresh_from_db()
    return run


def run_delete(*, run: Run) -> None:
    if not run.is_finished:
        raise ApiError(f"Run {run.pk} is {run.status}; cancel it before deleting it.", status_code=409)
    paths = list(run.artifacts.values_list("storage_path", flat=True))
    run.delete()

    def delete_files():
        for path in paths:
            default_storage.delete(path)

    transaction.on_commit(delete_files)


# What a running attempt reports (called by the worker's flusher thread) ------------------------------


@dataclass
class RunReport:
    """Everything an attempt has to say since its last flush."""

    progress: float | None = None
    progress_message: str = ""
    current_step: int | None = None
    metrics: list[tuple[str, int, float, datetime]] = field(default_factory=list)
    log_lines: list[tuple[datetime, str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class FlushOutcome:
    owned: bool  # False once another attempt (or a terminal status) replaced this one
    cancel_requested: bool = False
    events: list[dict] = field(default_factory=list)  # numbered; the caller sends them after commit


def run_report(*, run_id: int, attempt: int, report: RunReport) -> FlushOutcome:
    """Write one batch for a running attempt: heartbeat, progress, metrics, log lines, events."""
    now = timezone.now()
    with transaction.atomic():
        run = Run.objects.filter(pk=run_id, attempt=attempt, status=RunStatus.RUNNING).values(
            "cancel_requested", "latest_metrics"
        ).first()
        if run is None:
            return FlushOutcome(owned=False)
        updates: dict = {"heartbeat_at": now}
        events: list[dict] = []
        if report.progress is not None:
            updates.update(progress=min(max(report.progress, 0.0), 1.0), progress_message=report.progress_message[:200])
            events.append({"type": "progress", "progress": updates["progress"], "message": updates["progress_message"]})
        if report.current_step is not None:
            updates["current_step"] = report.current_step
        if report.metrics:
            metric_upsert(run_id=run_id, points=report.metrics)
            latest = dict(run["latest_metrics"])
            by_key: dict[str, list[dict]] = {}
            for key, step, value, time in report.metrics:
                latest[key] = value
                by_key.setdefault(key, []).append({"step": step, "value": value, "time": time.isoformat()})
            updates["latest_metrics"] = latest
            events.append({"type": "metrics", "metrics": by_key})
        if report.log_lines:
            LogLine.objects.bulk_create(
                LogLine(run_id=run_id, attempt=attempt, time=time, level=level, message=message)
                for time, level, message in report.log_lines
            )
            events.extend(
                {"type": "log", "level": level, "message": message, "time": time.isoformat()}
                for time, level, message in report.log_lines
            )
        Run.objects.filter(pk=run_id, attempt=attempt, status=RunStatus.RUNNING).update(**updates)
        numbered = events_number(run_id=run_id, events=events)
    return FlushOutcome(owned=True, cancel_requested=run["cancel_requested"], events=numbered)


def metric_upsert(*, run_id: int, points: list[tuple[str, int, float, datetime]]) -> None:
    """Insert metric points; a repeated (key, step) replaces its value (resumed attempts repeat steps)."""
    _metric_upsert_columns(
        run_id=run_id,
        keys=[key for key, _, _, _ in points],
        steps=[step for _, step, _, _ in points],
        values=[value for _, _, value, _ in points],
        times_us=[(time - EPOCH) // ONE_MICROSECOND for _, _, _, time in points],
    )


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)

# One statement for the whole batch: four arrays in, each passed as one text literal (`{a,b,...}`), which
# costs a fraction of a placeholder or an adapted element per value, on both sides. DISTINCT ON keeps the
# last point of a repeated (key, step), which ON CONFLICT needs, and sorts the rows, so that concurrent
# batches lock the rows they share in the same order.
METRIC_UPSERT_POSTGRES = """
INSERT INTO experiments_metric (run_id, key, step, value, time)
SELECT DISTINCT ON (point.key, point.step)
       %s, point.key, point.step, point.value, TIMESTAMPTZ 'epoch' + point.us * INTERVAL '1 microsecond'
FROM unnest(%s::varchar[], %s::integer[], %s::double precision[], %s::bigint[]) WITH ORDINALITY
     AS point(key, step, value, us, position)
ORDER BY point.key, point.step, point.position DESC
ON CONFLICT (run_id, key, step) DO UPDATE SET value = EXCLUDED.value, time = EXCLUDED.time
"""


def _metric_upsert_columns(
    *, run_id: int, keys: list[str], steps: list[int], values: list[float], times_us: list[int]
) -> None:
    """Upsert points given as columns (times in microseconds since the epoch); the last of a repeated
    (key, step) wins. On Postgres one INSERT ... ON CONFLICT over unnested arrays; elsewhere bulk_create."""
    if not keys:
        return
    if connection.vendor == "postgresql":
        quoted = {key: _array_quote(key) for key in set(keys)}  # a batch repeats a few keys
        arrays = [
            "{" + ",".join(map(quoted.__getitem__, keys)) + "}",
            "{" + ",".join(map(str, steps)) + "}",
            "{" + ",".join(map(repr, values)) + "}",  # repr: the shortest text that reads back the same float
            "{" + ",".join(map(str, times_us)) + "}",
        ]
        with connection.cursor() as cursor:
            cursor.execute(METRIC_UPSERT_POSTGRES, [run_id, *arrays])
        return
    last = {(key, step): (value, us) for key, step, value, us in zip(keys, steps, values, times_us)}
    Metric.objects.bulk_create(
        [Metric(run_id=run_id, key=key, step=step, value=value, time=EPOCH + timedelta(microseconds=us))
         for (key, step), (value, us) in last.items()],
        update_conflicts=True,
        unique_fields=["run", "key", "step"],
        update_fields=["value", "time"],
    )


def _array_quote(text: str) -> str:
    """`text` as an element of a Postgres array literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# External runs: created running by a script outside the platform, which logs and finishes them -------


def run_create_external(*, user, pipeline: str = EXTERNAL_PIPELINE, params: dict | None = None,
                        experiment: str | None = None) -> Run:
    """A run in state running at once, for a client that trains elsewhere (like MLflow's create_run).

    Its params are the client's own, stored as given; no task is sent and no worker owns it.
    """
    now = timezone.now()
    with transaction.atomic():
        experiment_row = _experiment_for_run(user=user, name=experiment or pipeline, pipeline=pipeline)
        run = Run.objects.create(
            owner=user, experiment=experiment_row, pipeline=pipeline, params=params or {}, external=True,
            status=RunStatus.RUNNING, queue="", started_at=now,
        )
        RunStatusChange.objects.create(
            run=run, attempt=run.attempt, to_status=RunStatus.RUNNING, reason="created by an external client"
        )
    return run


def metric_log_batch(
    *, run: Run, keys: list[str], steps: list[int], values: list[float], times_ms: list[int]
) -> int:
    """Log a batch of validated points (as columns) to a running external run; returns how many.

    Points are upserts on (run, key, step); a key's latest value is the one at its highest step, so a
    batch that fills in earlier steps leaves it alone. One `metrics` event per batch.
    """
    _check_external_running(run)
    if not keys:
        return 0
    latest: dict[str, tuple[int, float]] = {}
    by_key: dict[str, list[dict]] = {}
    second_text: dict[int, str] = {}  # a batch spans few seconds: format each once, add the milliseconds
    for key, step, value, ms in zip(keys, steps, values, times_ms):
        best = latest.get(key)
        if best is None or step >= best[0]:
            latest[key] = (step, value)
        second, millisecond = divmod(ms, 1000)
        text = second_text.get(second)
        if text is None:
            text = second_text[second] = (EPOCH + timedelta(seconds=second)).isoformat()[:19]
        # What datetime.isoformat() says, as the history and the worker's events do.
        text = f"{text}.{millisecond:03d}000+00:00" if millisecond else text + "+00:00"
        points = by_key.get(key)
        if points is None:
            points = by_key[key] = []
        points.append({"step": step, "value": value, "time": text})

    with transaction.atomic():
        _metric_upsert_columns(
            run_id=run.pk, keys=keys, steps=steps, values=values, times_us=[ms * 1000 for ms in times_ms]
        )
        # Locked after the metric rows, so that concurrent batches of one run merge their latest values
        # one after the other; every writer takes the metric rows first, the run row last.
        row = Run.objects.select_for_update().filter(pk=run.pk).values(
            "status", "current_step", "latest_metrics", "latest_metric_steps"
        ).get()
        _check_external_running(run, status=row["status"])
        latest_values, latest_steps = row["latest_metrics"], row["latest_metric_steps"]
        for key, (step, value) in latest.items():
            if step >= latest_steps.get(key, -1):
                latest_values[key], latest_steps[key] = value, step
        Run.objects.filter(pk=run.pk).update(
            latest_metrics=latest_values, latest_metric_steps=latest_steps,
            current_step=max(row["current_step"], max(steps)),
        )
        events_publish(run_id=run.pk, events=[{"type": "metrics", "metrics": by_key}])
    return len(keys)


def run_finish_external(*, run: Run, status: str, error: str = "") -> Run:
    """running -> succeeded, failed or cancelled, as the external run's client says."""
    _check_external_running(run)
    if not run_finish(run_id=run.pk, attempt=run.attempt, status=status, reason="finished by its client", error=error):
        run.refresh_from_db()
        raise ApiError(f"Run {run.pk} already {run.status}.", status_code=409)
    run.refresh_from_db()
    return run


def _check_external_running(run: Run, *, status: str | None = None) -> None:
    if not run.external:
        raise ApiError(f"Run {run.pk} is not an external run: its worker reports and finishes it.", status_code=409)
    status = status or run.status
    if status != RunStatus.RUNNING:
        raise ApiError(f"Run {run.pk} is {status}, not running.", status_code=409)


def artifact_register(
    *, run_id: int, attempt: int, name: str, kind: str, storage_path: str, size: int, sha256: str, metadata: dict
) -> Artifact | None:
    """Record a file already in the artifact store; None if this attempt no longer owns the run."""
    with transaction.atomic():
        if not Run.objects.filter(pk=run_id, attempt=attempt, status=RunStatus.RUNNING).exists():
            return None
        artifact, _ = Artifact.objects.update_or_create(
            run_id=run_id, name=name,
            defaults={"attempt": attempt, "kind": kind, "storage_path": storage_path, "bytes": size,
                      "sha256": sha256, "metadata": metadata},
        )
        if kind != Artifact.Kind.CHECKPOINT:
            events_publish(run_id=run_id, events=[{
                "type": "artifact", "id": artifact.pk, "name": name, "kind": kind, "size": size,
            }])
    return artifact


def checkpoints_prune(*, run_id: int, keep: int) -> None:
    """Keep the newest `keep` checkpoints of a run in the artifact store."""
    stale = Artifact.objects.filter(run_id=run_id, kind=Artifact.Kind.CHECKPOINT).order_by("-created_at", "-id")[keep:]
    for artifact in list(stale):
        default_storage.delete(artifact.storage_path)
        artifact.delete()
