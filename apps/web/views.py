"""HTML pages. No business logic: they call selectors and render."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from apps.experiments import selectors
from worker.pipelines.base import all_pipelines


@login_required
def home(request):
    runs = selectors.run_list(user=request.user)[:50]
    return render(request, "web/home.html", {"runs": runs, "pipelines": all_pipelines()})


@login_required
def run_detail(request, run_id: int):
    run = selectors.run_get_for_user(user=request.user, run_id=run_id)
    return render(request, "web/run.html", {"run": run})
