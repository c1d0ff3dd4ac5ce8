"""Validation of uploaded datasets (on the `default` queue): safe extraction, then the kind's checks."""

from __future__ import annotations

import logging

from apps.datasets.models import Dataset
from apps.datasets.services import dataset_mark_validated
from worker.pipelines.base import all_pipelines
from worker.runtime.runner import dataset_local_folder

logger = logging.getLogger(__name__)


def dataset_validate(dataset_id: int) -> str:
    dataset = Dataset.objects.filter(pk=dataset_id, status=Dataset.Status.VALIDATING).first()
    if dataset is None:
        return f"dataset {dataset_id} is not waiting for validation"
    kind = next(
        (kind for pipeline in all_pipelines() for kind in pipeline.dataset_kinds if kind.name == dataset.kind), None
    )
    try:
        if kind is None:
            raise ValueError(f"unknown dataset kind {dataset.kind!r}")
        stats = kind.run_inspect(dataset_local_folder(dataset))
    except ValueError as error:
        dataset_mark_validated(dataset_id=dataset_id, error=str(error))
        return f"dataset {dataset_id} invalid: {error}"
    except Exception as error:
        logger.exception("validating dataset %s failed", dataset_id)
        dataset_mark_validated(dataset_id=dataset_id, error=f"could not be read: {type(error).__name__}: {error}")
        return f"dataset {dataset_id} unreadable"
    dataset_mark_validated(dataset_id=dataset_id, stats=stats)
    return f"dataset {dataset_id} ready: {stats}"
