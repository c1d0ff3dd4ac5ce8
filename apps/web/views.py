"""HTML pages. No business logic: they read through selectors, write through services, and render.

Every read of a run, dataset or model goes through the selectors that enforce ownership, so another
user's id is a 404 here exactly as over REST. Live parts of the pages (progress, charts, logs, chat)
are the websockets' and the REST API's, called from static/web/*.js with the session cookie.
"""

from __future__ import annotations

import json
from collections import OrderedDict

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import select_template
from django.urls import reverse
from django.views.decorators.http import require_POST

from apps.accounts.errors import ApiError
from apps.chat.selectors import CHAT_PIPELINES  # pipelines whose models answer on /ws/chat/<id>/
from apps.datasets import selectors as dataset_selectors
from apps.datasets import services as dataset_services
from apps.experiments import selectors
from apps.experiments import services as run_services
from apps.experiments.serializers import ArtifactSerializer, RunSerializer
from apps.registry import selectors as model_selectors
from apps.registry import services as model_services
from apps.registry.models import ModelVersion
from apps.web import previews
from apps.web.forms import param_fields, params_from_post
from worker.pipelines.base import all_pipelines, get_pipeline, pipeline_names

RECENT_RUNS = 50
LOG_TAIL_LINES = 200
DEFAULT_PIPELINE = "traffic_signs"  # the new-run form's first choice: chapter 1, trained in a minute


# Accounts ----------------------------------------------------------------------------------------


def signup(request):
    """Self sign-up, when DLSITE_SIGNUP allows it (on in `make demo`, off by default)."""
    if not settings.SIGNUP_ENABLED:
        raise Http404("Sign-up is off on this site.")
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("home")
    return render(request, "registration/signup.html", {"form": form})


# Dashboard ---------------------------------------------------------------------------------------


@login_required
def home(request):
    workers = list(selectors.worker_list_alive())
    runs = list(selectors.run_list(user=request.user)[:RECENT_RUNS])
    return render(request, "web/home.html", {
        "runs": runs,
        "live_run_ids": [run.pk for run in runs if not run.is_finished],
        "experiments": selectors.experiment_list(user=request.user)[:20],
        "status_counts": selectors.run_status_counts(user=request.user),
        "workers": workers,
        "queues": _queue_health(workers),
        "pipelines": all_pipelines(),
    })


def _queue_health(workers) -> list[dict]:
    """Per configured queue: messages waiting (None if Redis is down) and how many live workers serve it."""
    depths = selectors.queue_depths()
    return [
        {
            "name": queue,
            "waiting": depths[queue] if depths is not None else None,
            "workers": sum(queue in worker.queues for worker in workers),
        }
        for queue in settings.QUEUES
    ]


# Datasets ----------------------------------------------------------------------------------------


@login_required
def dataset_list(request):
    kinds = sorted(
        {(kind.name, kind.title, kind.description) for pipeline in all_pipelines() for kind in pipeline.dataset_kinds}
    )
    return render(request, "web/datasets.html", {
        "datasets": dataset_selectors.dataset_list(user=request.user),
        "kinds": kinds,
        "max_upload_bytes": settings.DATASET_MAX_UPLOAD_BYTES,
    })


@login_required
def dataset_detail(request, dataset_id: int):
    dataset = dataset_selectors.dataset_get_for_user(user=request.user, dataset_id=dataset_id)
    return render(request, "web/dataset.html", {
        "dataset": dataset,
        "samples": previews.dataset_samples(dataset),
        "pipelines": [p for p in all_pipelines() if p.dataset_kind(dataset.kind) is not None],
    })


@login_required
def dataset_sample_image(request, dataset_id: int, index: int):
    """A thumbnail (PNG) of the dataset's `index`-th image, read from the uploaded archive."""
    dataset = dataset_selectors.dataset_get_for_user(user=request.user, dataset_id=dataset_id)
    thumbnail = previews.dataset_thumbnail(dataset, index)
    if thumbnail is None:
        raise Http404("No such image in this dataset.")
    response = HttpResponse(thumbnail, content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    return response


@login_required
@require_POST
def dataset_delete(request, dataset_id: int):
    dataset = dataset_selectors.dataset_get_owned(user=request.user, dataset_id=dataset_id)
    try:
        dataset_services.dataset_delete(dataset=dataset)
    except ApiError as error:
        messages.error(request, error.message)
        return redirect("dataset-page", dataset_id=dataset_id)
    messages.success(request, f"Dataset {dataset.name!r} deleted.")
    return redirect("datasets-page")


# Runs ----------------------------------------------------------------------------------------------


@login_required
def run_new(request):
    """The form of a new run; `?pipeline=` picks the pipeline, `?from=<run id>` prefills it ("run again")."""
    source = None
    if request.GET.get("from", "").isdigit():
        source = selectors.run_get_for_user(user=request.user, run_id=int(request.GET["from"]))
    name = request.POST.get("pipeline") or request.GET.get("pipeline") or (source.pipeline if source else "")
    names = pipeline_names()
    if name not in names:
        name = DEFAULT_PIPELINE if DEFAULT_PIPELINE in names else names[0]
    pipeline = get_pipeline(name)
    schema = pipeline.params_schema()
    values = dict(source.params) if source else {}
    chosen = {
        "dataset": source.dataset.slug if source and source.dataset else "",
        "experiment": source.experiment.name if source else "",
    }
    if request.GET.get("dataset"):
        chosen["dataset"] = request.GET["dataset"]
    errors: dict[str, list[str]] = {}
    message = ""

    if request.method == "POST":
        params, errors = params_from_post(schema, request.POST)
        values = {**params, **{p.name: request.POST.get(p.input_id, "") for p in param_fields(schema) if p.widget != "checkbox"}}
        chosen = {"dataset": request.POST.get("dataset", ""), "experiment": request.POST.get("experiment", "").strip()}
        if not errors:
            try:
                run = run_services.run_submit(
                    user=request.user, pipeline=name, params=params, dataset=_dataset_reference(chosen["dataset"]),
                    experiment=chosen["experiment"] or None,
                )
            except ApiError as error:
                message, errors = error.message, error.errors
            else:
                return redirect("run-page", run_id=run.pk)
        else:
            message = "Invalid parameters."

    param_errors = {key.removeprefix("params."): value for key, value in errors.items() if key.startswith("params.")}
    param_errors.update({key: value for key, value in errors.items() if key in schema.get("properties", {})})
    kinds = {kind.name for kind in pipeline.dataset_kinds}
    datasets = [
        dataset for dataset in dataset_selectors.dataset_list(user=request.user)
        if dataset.kind in kinds and dataset.status == dataset.Status.READY
    ]
    return render(request, "web/run_new.html", {
        "pipelines": all_pipelines(),
        "pipeline": pipeline,
        "fields": param_fields(schema, values, param_errors),
        "datasets": datasets,
        "chosen": chosen,
        "source": source,
        "message": message,
        "errors": {key: value for key, value in errors.items() if not key.startswith("params.")},
    }, status=400 if message else 200)


def _dataset_reference(text: str) -> str | int | None:
    if not text:
        return None
    return int(text) if text.isdigit() else text


@login_required
def run_detail(request, run_id: int):
    run = selectors.run_get_for_user(user=request.user, run_id=run_id)
    artifacts = ArtifactSerializer(selectors.run_artifacts(run=run), many=True).data
    log_lines = [
        {"id": line.id, "time": line.time.isoformat(), "level": line.level, "message": line.message}
        for line in selectors.run_log_tail(run=run, limit=LOG_TAIL_LINES)
    ]
    return render(request, "web/run.html", {
        "run": run,
        "run_data": RunSerializer(run).data,
        "artifacts": artifacts,
        "log_lines": log_lines,
        "params": [(name, json.dumps(value)) for name, value in run.params.items()],  # as the API writes them
        "model_version": getattr(run, "model_version", None),
        "status_changes": run.status_changes.all(),
    })


@login_required
@require_POST
def run_cancel(request, run_id: int):
    run = selectors.run_get_for_user(user=request.user, run_id=run_id)
    try:
        run_services.run_cancel(run=run)
    except ApiError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Cancel requested for run #{run.pk}.")
    return redirect("run-page", run_id=run.pk)


@login_required
def compare(request):
    """`?runs=<id>,<id>,...`: params side by side, metric curves overlaid, final metrics. Without two
    runs, the user's recent runs to pick from."""
    ids = [int(part) for part in request.GET.get("runs", "").replace(" ", "").split(",") if part.isdigit()]
    ids = list(OrderedDict.fromkeys(ids))
    if len(ids) < 2 or request.GET.get("pick"):
        runs = list(selectors.run_list(user=request.user)[:RECENT_RUNS])
        return render(request, "web/compare_pick.html", {"runs": runs, "picked": ids}, status=200)
    runs = [selectors.run_get_for_user(user=request.user, run_id=run_id) for run_id in ids]
    pipelines = sorted({run.pipeline for run in runs})
    if len(pipelines) > 1:
        return render(request, "web/compare_pick.html", {
            "runs": list(selectors.run_list(user=request.user)[:RECENT_RUNS]),
            "picked": ids,
            "message": f"These runs belong to different pipelines ({', '.join(pipelines)}); compare runs of one pipeline.",
        }, status=400)
    param_names = sorted({name for run in runs for name in run.params})
    param_rows = []
    for name in param_names:
        values = [json.dumps(run.params[name]) if name in run.params else "—" for run in runs]
        param_rows.append({"name": name, "values": values, "differs": len(set(values)) > 1})
    metric_names = sorted({name for run in runs for name in run.latest_metrics})
    metric_rows = [
        {"name": name, "values": [run.latest_metrics.get(name) for run in runs]} for name in metric_names
    ]
    # Steps and values only: the points' times would double the page's weight, and no chart shows them.
    histories = {
        str(run.pk): {
            key: [{"step": point["step"], "value": point["value"]} for point in points]
            for key, points in selectors.run_metric_history(run=run).items()
        }
        for run in runs
    }
    return render(request, "web/compare.html", {
        "runs": runs,
        "param_rows": param_rows,
        "metric_rows": metric_rows,
        "histories": histories,
        "run_ids": ",".join(str(run.pk) for run in runs),
    })


# Models ------------------------------------------------------------------------------------------


@login_required
def model_list(request):
    """Versions grouped by (owner, name), newest first, each with its aliases, sharing and try-it panel."""
    groups: OrderedDict[tuple[str, str], list[dict]] = OrderedDict()
    for model in model_selectors.model_version_list(user=request.user).order_by("owner__username", "name", "-version"):
        groups.setdefault((model.owner.username, model.name), []).append({
            "model": model,
            "own": model.owner_id == request.user.pk,
            "aliases": sorted(alias.alias for alias in model.aliases.all()),
            "shared_with": ", ".join(sorted(user.username for user in model.shared_with.all())),
            "predict_url": reverse("model-predict", args=[str(model.pk)]),
            "try_template": try_template(model.pipeline),
            "chat": model.pipeline in CHAT_PIPELINES,
        })
    return render(request, "web/models.html", {
        "groups": [{"owner": owner, "name": name, "versions": versions} for (owner, name), versions in groups.items()],
        "visibilities": ModelVersion.Visibility.values,
    })


def try_template(pipeline: str) -> str:
    """The pipeline's try-it panel, `web/try/<pipeline>.html`, else the generic JSON one."""
    return select_template([f"web/try/{pipeline}.html", "web/try/_generic.html"]).template.name


@login_required
@require_POST
def model_update(request, model_id: int):
    """Promote (set an alias), unset an alias, or change who may use a version; owner only."""
    model = model_selectors.model_version_get_owned(user=request.user, model_id=model_id)
    aliases = sorted(alias.alias for alias in model.aliases.all())
    changes: dict = {}
    if request.POST.get("promote"):
        changes["aliases"] = sorted({*aliases, request.POST["promote"]})
    elif request.POST.get("unset_alias"):
        changes["aliases"] = [alias for alias in aliases if alias != request.POST["unset_alias"]]
    if "visibility" in request.POST:
        changes["visibility"] = request.POST["visibility"]
        changes["shared_with"] = [name.strip() for name in request.POST.get("shared_with", "").split(",") if name.strip()]
    try:
        model_services.model_version_update(model_version=model, **changes)
    except ApiError as error:
        details = "; ".join(f"{field}: {' '.join(texts)}" for field, texts in error.errors.items())
        messages.error(request, f"{model}: {error.message} {details}".strip())
    else:
        messages.success(request, f"{model} updated.")
    return redirect(f"{reverse('models-page')}#model-{model.pk}")


@login_required
def chat(request, model_version_id: int):
    model = model_selectors.model_version_get_usable(user=request.user, reference=str(model_version_id))
    return render(request, "web/chat.html", {"model": model, "is_chatbot": model.pipeline in CHAT_PIPELINES})
