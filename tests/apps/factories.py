"""Rows made directly, for tests that need runs, artifacts and model versions in a given state."""

from __future__ import annotations

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from apps.experiments.models import Artifact, Experiment, Run
from apps.registry.models import ModelVersion


def make_run(owner, *, experiment: str = "traffic_signs", pipeline: str = "traffic_signs", **fields) -> Run:
    experiment_row, _ = Experiment.objects.get_or_create(owner=owner, name=experiment, defaults={"pipeline": pipeline})
    return Run.objects.create(owner=owner, experiment=experiment_row, pipeline=pipeline, **fields)


def make_artifact(run: Run, *, name: str, content: bytes, kind: str = Artifact.Kind.REPORT) -> Artifact:
    path = default_storage.save(f"runs/{run.pk}/{name}", ContentFile(content))
    return Artifact.objects.create(run=run, name=name, kind=kind, storage_path=path, bytes=len(content))


def make_model_version(owner, *, name: str = "signs", version: int = 1, **fields) -> ModelVersion:
    fields.setdefault("pipeline", "traffic_signs")
    fields.setdefault("storage_path", f"models/{owner.username}/{name}/{version}.zip")
    return ModelVersion.objects.create(owner=owner, name=name, version=version, source=ModelVersion.Source.UPLOAD, **fields)
