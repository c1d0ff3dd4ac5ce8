"""The runner: claim a run, train its pipeline through a PlatformRunContext, record the outcome.

This is the one place where Django (the run's rows) meets a pipeline (pure Python + TensorFlow).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import traceback
from functools import cache
from importlib import metadata
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage

from apps.datasets.models import Dataset
from apps.experiments import services
from apps.experiments.models import Artifact, Run, RunStatus
from worker.pipelines.base import DatasetRef, Pipeline, get_pipeline
from worker.runtime.platform import PlatformRunContext
from worker.runtime.storage import download_folder_zip, upload_folder_zip

logger = logging.getLogger(__name__)

RECORDED_PACKAGES = ("tensorflow-cpu", "tensorflow", "keras", "numpy", "scikit-learn", "scikit-image", "pillow", "django", "celery")
MODEL_ARCHIVE = "model.zip"


def run_execute(*, run_id: int, attempt: int) -> str:
    """Run one attempt of a run; returns what happened (for the task's log)."""
    run = services.run_claim(
        run_id=run_id, attempt=attempt, worker=worker_name(), code_version=code_version(),
        package_versions=package_versions(),
    )
    if run is None:
        return f"run {run_id} attempt {attempt} is not claimable (already taken, cancelled or superseded)"

    pipeline = get_pipeline(run.pipeline)
    params = pipeline.Params.model_validate(run.params)
    work_dir = settings.WORK_DIR / "runs" / f"{run_id}-{attempt}"
    shutil.rmtree(work_dir, ignore_errors=True)  # left by a killed attempt, or another database's run
    ctx = PlatformRunContext(
        run_id=run_id, attempt=attempt, seed=run.seed or 0, work_dir=work_dir,
        cache_dir=settings.WORK_DIR / "cache", gpus=run.gpus,
    )
    try:
        _restore_checkpoint(ctx, run)
        _fetch_parent_model(ctx, run)
        dataset = _prepare_dataset(run, pipeline, params, ctx)
        if dataset is not None:
            services.run_set_dataset_hash(run_id=run_id, attempt=attempt, dataset_hash=dataset.sha256)
        ctx.log(f"training {run.pipeline} on {dataset.name if dataset else 'its environment'} with {run.params}")
        result = pipeline.train(ctx, dataset, params)
        if not ctx.cancelled and not ctx.lost_ownership:
            ctx.progress(1, 1, "saving the model")
        ctx.close()  # everything reported is written before the outcome is
        if ctx.lost_ownership:
            return f"run {run_id} attempt {attempt} lost its claim; its outcome is discarded"
        if ctx.cancelled:
            services.run_finish(run_id=run_id, attempt=attempt, status=RunStatus.CANCELLED, reason="cancelled by the user")
            return f"run {run_id} cancelled"
        model_artifact = _store_model(run, attempt, result.model_dir)
        services.run_succeed(
            run_id=run_id, attempt=attempt, model_artifact_id=model_artifact.pk if model_artifact else None,
            metrics=result.metrics, summary=result.summary,
        )
        return f"run {run_id} succeeded: {result.metrics}"
    except Exception as error:
        ctx.log(f"failed: {error}", level="error")
        ctx.close()
        message = f"{type(error).__name__}: {error}"
        services.run_finish(
            run_id=run_id, attempt=attempt, status=RunStatus.FAILED, reason=message[:500], error=message,
            traceback=traceback.format_exc(),
        )
        logger.exception("run %s failed", run_id)
        return f"run {run_id} failed: {message}"
    finally:
        ctx.close()
        shutil.rmtree(work_dir, ignore_errors=True)


def _prepare_dataset(run: Run, pipeline: Pipeline, params, ctx: PlatformRunContext) -> DatasetRef | None:
    dataset: Dataset | None = run.dataset
    if dataset is None:
        return None
    if dataset.source == Dataset.Source.BUILTIN:
        builtin = pipeline.builtin_dataset(dataset.name)
        if builtin is None:
            raise ValueError(f"{pipeline.name} has no built-in dataset {dataset.name!r}")
        ctx.log(f"preparing built-in dataset {dataset.name}")
        folder, sha256 = builtin.build(settings.WORK_DIR / "datasets" / "builtin", params)
        return DatasetRef(path=folder, kind=builtin.kind, name=f"builtin:{dataset.name}", sha256=sha256)
    folder = dataset_local_folder(dataset)
    return DatasetRef(path=folder, kind=dataset.kind, name=dataset.name, sha256=dataset.sha256)


def dataset_local_folder(dataset: Dataset) -> Path:
    """The extracted upload on this host, fetched from the artifact store once per content hash."""
    from worker.runtime.archives import extract_checked  # the upload checks, shared with validation

    folder = settings.WORK_DIR / "datasets" / "uploads" / dataset.sha256
    if not (folder / ".complete").exists():
        extract_checked(dataset.storage_path, folder)
        (folder / ".complete").touch()
    return folder


def _restore_checkpoint(ctx: PlatformRunContext, run: Run) -> None:
    """An attempt after the first continues from the newest checkpoint in the artifact store."""
    checkpoint = run.artifacts.filter(kind=Artifact.Kind.CHECKPOINT).order_by("-created_at", "-id").first()
    if checkpoint is None:
        return
    download_folder_zip(checkpoint.storage_path, ctx.checkpoint_dir)
    Run.objects.filter(pk=run.pk, attempt=ctx.attempt).update(resumed_from_step=checkpoint.metadata.get("step"))
    ctx.log(f"restored checkpoint {checkpoint.name}")


def _fetch_parent_model(ctx: PlatformRunContext, run: Run) -> None:
    """A run that continues another starts from the parent's trained model."""
    if run.parent_id is None:
        return
    parent_model = Artifact.objects.filter(run_id=run.parent_id, kind=Artifact.Kind.MODEL).first()
    if parent_model is None:
        raise ValueError(f"parent run {run.parent_id} has no trained model to continue from")
    ctx.initial_model_dir = download_folder_zip(parent_model.storage_path, ctx.work_dir / "parent_model")
    ctx.log(f"starting from the model of run {run.parent_id}")


def _store_model(run: Run, attempt: int, model_dir: Path | None) -> Artifact | None:
    if model_dir is None or not Path(model_dir).exists():
        return None
    storage_path, size, sha256 = upload_folder_zip(Path(model_dir), f"runs/{run.pk}/artifacts/{MODEL_ARCHIVE}")
    artifact = services.artifact_register(
        run_id=run.pk, attempt=attempt, name=MODEL_ARCHIVE, kind=Artifact.Kind.MODEL, storage_path=storage_path,
        size=size, sha256=sha256, metadata={"pipeline": run.pipeline},
    )
    if artifact is None:
        default_storage.delete(storage_path)
    return artifact


@cache
def worker_name() -> str:
    return os.environ.get("DLSITE_WORKER_NAME") or f"{socket.gethostname()}:{os.getpid()}"


@cache
def code_version() -> str:
    if os.environ.get("DLSITE_CODE_VERSION"):
        return os.environ["DLSITE_CODE_VERSION"]
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=settings.BASE_DIR, capture_output=True, text=True,
            timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@cache
def package_versions() -> dict[str, str]:
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
