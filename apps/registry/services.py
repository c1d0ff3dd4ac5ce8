"""Registry writes: versions from runs, aliases, sharing."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Max

from apps.accounts.errors import ApiError
from apps.registry.models import ModelAlias, ModelVersion

ALIAS_MAX_LENGTH = 64


def model_version_create_from_run(*, run, artifact, metrics: dict) -> ModelVersion:
    """The next version of the run's model name (its experiment's name), counted per owner and name."""
    name = run.experiment.name
    for _ in range(5):  # two runs of one name finishing together race for the number: retry
        try:
            with transaction.atomic():
                latest = ModelVersion.objects.filter(owner=run.owner, name=name).aggregate(v=Max("version"))["v"]
                return ModelVersion.objects.create(
                    owner=run.owner, name=name, version=(latest or 0) + 1, pipeline=run.pipeline, run=run,
                    source=ModelVersion.Source.RUN, artifact=artifact, storage_path=artifact.storage_path,
                    sha256=artifact.sha256, metrics=metrics,
                )
        except IntegrityError:
            continue
    raise RuntimeError(f"could not number a new version of model {name!r}")


def model_version_update(
    *, model_version: ModelVersion, aliases: list[str] | None = None, visibility: str | None = None,
    shared_with: list[str] | None = None,
) -> ModelVersion:
    errors: dict[str, list[str]] = {}
    if aliases is not None:
        bad = [a for a in aliases if not isinstance(a, str) or not a.strip() or len(a) > ALIAS_MAX_LENGTH or "@" in a]
        if not isinstance(aliases, list) or bad:
            errors["aliases"] = [f"Each alias is a non-empty string of at most {ALIAS_MAX_LENGTH} characters without '@'."]
    if visibility is not None and visibility not in ModelVersion.Visibility.values:
        errors["visibility"] = [f"Expected one of {ModelVersion.Visibility.values}."]
    users = []
    if shared_with is not None:
        if not isinstance(shared_with, list) or not all(isinstance(u, str) for u in shared_with):
            errors["shared_with"] = ["Expected a list of usernames."]
        else:
            users = list(get_user_model().objects.filter(username__in=shared_with))
            unknown = sorted(set(shared_with) - {u.username for u in users})
            if unknown:
                errors["shared_with"] = [f"Unknown users: {', '.join(unknown)}."]
    if errors:
        raise ApiError("Invalid model update.", errors)

    with transaction.atomic():
        if aliases is not None:
            wanted = {a.strip() for a in aliases}
            # An alias names one version: setting it here moves it from any other version.
            ModelAlias.objects.filter(owner=model_version.owner, name=model_version.name, alias__in=wanted).delete()
            model_version.aliases.exclude(alias__in=wanted).delete()
            ModelAlias.objects.bulk_create(
                ModelAlias(model_version=model_version, owner=model_version.owner, name=model_version.name, alias=a)
                for a in sorted(wanted)
            )
        if visibility is not None:
            model_version.visibility = visibility
            model_version.save(update_fields=["visibility"])
        if shared_with is not None:
            model_version.shared_with.set(users)
    return model_version
