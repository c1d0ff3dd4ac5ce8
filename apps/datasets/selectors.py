"""Dataset reads, with ownership enforced here once: a user sees their uploads and the built-ins."""

from django.db.models import Q, QuerySet
from django.shortcuts import get_object_or_404

from apps.datasets.models import Dataset


def dataset_list(*, user) -> QuerySet[Dataset]:
    return Dataset.objects.filter(Q(owner=user) | Q(source=Dataset.Source.BUILTIN))


def dataset_get_for_user(*, user, dataset_id: int) -> Dataset:
    return get_object_or_404(dataset_list(user=user), pk=dataset_id)


def dataset_get_owned(*, user, dataset_id: int) -> Dataset:
    return get_object_or_404(Dataset.objects.filter(owner=user), pk=dataset_id)
