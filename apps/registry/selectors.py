"""Registry reads. A user may use their own models, those shared with them and public ones; only the
owner may change a model. Anything else is a 404."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Q, QuerySet
from django.http import Http404

from apps.accounts.errors import ApiError
from apps.registry.models import ModelVersion, Prediction
from dlsite.caching import TimedCache

_usable_by_token = TimedCache(seconds=settings.ACCESS_CACHE_SECONDS)


def model_version_list(*, user) -> QuerySet[ModelVersion]:
    visible = Q(owner=user) | Q(visibility=ModelVersion.Visibility.PUBLIC) | Q(
        visibility=ModelVersion.Visibility.SHARED, shared_with=user
    )
    return (
        ModelVersion.objects.filter(visible).distinct().select_related("owner").prefetch_related("aliases", "shared_with")
    )


def model_version_get_usable(*, user, reference: str) -> ModelVersion:
    """By id, or `name@alias` (the user's own first, then the ones others made usable)."""
    if reference.isdigit():
        model = model_version_list(user=user).filter(pk=int(reference)).first()
        if model is None:
            raise Http404
        return model
    name, _, alias = reference.partition("@")
    if not name or not alias:
        raise Http404
    candidates = list(model_version_list(user=user).filter(aliases__name=name, aliases__alias=alias))
    own = [m for m in candidates if m.owner_id == user.pk]
    if own:
        return own[0]
    if len({m.owner_id for m in candidates}) > 1:
        raise ApiError(f"{reference} names models of several owners; use the model's id.", {"model": ["Ambiguous."]})
    if not candidates:
        raise Http404
    return candidates[0]


def model_version_get_usable_cached(*, token: str, reference: str) -> ModelVersion | None:
    """What model_version_get_usable answered for this API token in the last ACCESS_CACHE_SECONDS, if
    anything."""
    return _usable_by_token.get((token, reference))


async def model_version_get_usable_async(*, user, reference: str, token: str | None) -> ModelVersion:
    """model_version_get_usable for an async view. Answers for an API token are remembered (by token,
    whose key nobody else ever has), so a service predicting many times a second costs the database
    nothing; a revoked share or a moved alias takes effect within ACCESS_CACHE_SECONDS."""
    model = model_version_get_usable_cached(token=token, reference=reference) if token else None
    if model is None:
        model = await sync_to_async(model_version_get_usable)(user=user, reference=reference)
        if token:
            _usable_by_token.set((token, reference), model)
    return model


def model_version_get_owned(*, user, model_id: int) -> ModelVersion:
    model = ModelVersion.objects.filter(owner=user, pk=model_id).first()
    if model is None:
        raise Http404
    return model


def prediction_get_for_user(*, user, prediction_id: int) -> Prediction:
    prediction = Prediction.objects.filter(owner=user, pk=prediction_id).first()
    if prediction is None:
        raise Http404
    return prediction
