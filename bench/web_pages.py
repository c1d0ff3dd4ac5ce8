"""Server time and weight of the main web pages with a busy account: 200 runs, two of them with four
metrics of 1,000 steps and 1,000 log lines, 20 model versions (20 try-it panels).

    nice -n 10 .venv/bin/python bench/web_pages.py

Against the configured database (embedded SQLite under $DLSITE_DATA_DIR, else DATABASE_URL), which it
migrates; the rows it makes belong to a user `web-pages-bench`, deleted at the end. Each page is read 20
times through Django's test client (in process: no network, no browser) and the median printed, as a
Markdown table row: page, path, milliseconds, kilobytes of HTML.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dlsite.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from apps.datasets.services import builtin_datasets_ensure  # noqa: E402
from apps.experiments.models import LogLine, Metric, RunStatus  # noqa: E402
from tests.apps.factories import make_model_version, make_run  # noqa: E402

USERNAME = "web-pages-bench"
READS = 20


def main() -> None:
    call_command("migrate", verbosity=0)
    builtin_datasets_ensure()
    users = get_user_model().objects
    users.filter(username=USERNAME).delete()
    user = users.create_user(username=USERNAME, password="unused")
    try:
        runs = [
            make_run(user, status=RunStatus.SUCCEEDED, progress=1.0, params={"epochs": 1000, "seed": index},
                     latest_metrics={"loss": 0.1, "accuracy": 0.9})
            for index in range(200)
        ]
        now = timezone.now()
        for run in runs[:2]:
            Metric.objects.bulk_create(
                Metric(run=run, key=key, step=step, value=1.0 / step, time=now)
                for key in ("loss", "accuracy", "val_loss", "val_accuracy") for step in range(1, 1001)
            )
            LogLine.objects.bulk_create(LogLine(run=run, attempt=1, time=now, message=f"line {i}") for i in range(1000))
        for version in range(1, 21):
            make_model_version(user, name="signs", version=version)
        client = Client()
        client.force_login(user)
        pages = {
            "dashboard (200 runs, 50 shown)": "/",
            "new run form (traffic_signs)": "/runs/new/?pipeline=traffic_signs",
            "run page (4 metrics x 1000 steps, 1000 log lines)": f"/runs/{runs[0].pk}/",
            "compare 2 runs (4 x 1000 points each)": f"/compare/?runs={runs[0].pk},{runs[1].pk}",
            "models (20 versions and try-it panels)": "/models/",
            "datasets": "/datasets/",
        }
        print("| page | path | median ms | KB |")
        print("|---|---|---:|---:|")
        for name, path in pages.items():
            times, size = [], 0
            for _ in range(READS):
                started = time.perf_counter()
                response = client.get(path)
                times.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise SystemExit(f"{path}: HTTP {response.status_code}")
                size = len(response.content)
            print(f"| {name} | `{path.split('?')[0]}` | {statistics.median(times) * 1000:.0f} | {size / 1024:.0f} |")
    finally:
        user.delete()


if __name__ == "__main__":
    main()
