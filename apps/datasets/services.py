"""Dataset writes: uploads, built-in rows, deletion."""

from __future__ import annotations

import hashlib
import zipfile

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction

from apps.accounts.errors import ApiError
from apps.datasets.models import Dataset
from dlsite.jobs import enqueue
from worker.pipelines.base import all_builtin_datasets, all_pipelines


def dataset_kind_names() -> set[str]:
    return {kind.name for pipeline in all_pipelines() for kind in pipeline.dataset_kinds}


def builtin_datasets_ensure() -> list[Dataset]:
    """One ready row per built-in dataset; the data itself is generated (and cached) where it is used."""
    rows = []
    for builtin in all_builtin_datasets():
        dataset, _ = Dataset.objects.update_or_create(
            source=Dataset.Source.BUILTIN,
            name=builtin.name,
            defaults={
                "kind": builtin.kind,
                "status": Dataset.Status.READY,
                "storage_path": f"builtin:{builtin.name}",
                "stats": {"title": builtin.title, "description": builtin.description},
            },
        )
        rows.append(dataset)
    return rows


def dataset_upload(*, owner, name: str, kind: str, file) -> Dataset:
    """Store an uploaded zip and queue its validation; obvious problems are refused at once."""
    errors: dict[str, list[str]] = {}
    if not name or not name.strip():
        errors["name"] = ["This field is required."]
    if kind not in dataset_kind_names():
        errors["kind"] = [f"Unknown dataset kind {kind!r}; expected one of {sorted(dataset_kind_names())}."]
    if file is None:
        errors["file"] = ["This field is required: a zip file."]
    elif file.size > settings.DATASET_MAX_UPLOAD_BYTES:
        errors["file"] = [f"{file.name}: {file.size} bytes is over the limit of {settings.DATASET_MAX_UPLOAD_BYTES}."]
    elif not zipfile.is_zipfile(file):
        errors["file"] = [f"{file.name}: not a zip archive."]
    if errors:
        raise ApiError("Invalid dataset upload.", errors)

    file.seek(0)
    digest = hashlib.sha256()
    for chunk in file.chunks():
        digest.update(chunk)
    file.seek(0)
    with transaction.atomic():
        dataset = Dataset.objects.create(
            owner=owner, name=name.strip(), kind=kind, source=Dataset.Source.UPLOAD,
            bytes=file.size, sha256=digest.hexdigest(), status=Dataset.Status.VALIDATING,
        )
        dataset.storage_path = default_storage.save(f"datasets/{dataset.pk}/upload.zip", file)
        dataset.save(update_fields=["storage_path"])
        enqueue("worker.tasks.dataset_validate", dataset.pk)
    return dataset


def dataset_mark_validated(*, dataset_id: int, stats: dict | None = None, error: str = "") -> None:
    status = Dataset.Status.INVALID if error else Dataset.Status.READY
    Dataset.objects.filter(pk=dataset_id, status=Dataset.Status.VALIDATING).update(
        status=status, stats=stats or {}, error=error
    )


def dataset_delete(*, dataset: Dataset) -> None:
    if dataset.source == Dataset.Source.BUILTIN:
        raise ApiError("Built-in datasets cannot be deleted.", status_code=409)
    if dataset.runs.exists():
        raise ApiError(
            f"Dataset {dataset.pk} is used by {dataset.runs.count()} runs; delete them first.", status_code=409
        )
    path = dataset.storage_path
    dataset.delete()
    if path:
        transaction.on_commit(lambda: default_storage.delete(path))

