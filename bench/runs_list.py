"""The runs list with 100,000 runs: latency of `GET /api/v1/runs/` pages for one user who has them all.

Seeds `--runs` runs (bulk_create, once: a second start reuses them) for the user `bench-runs` into the
configured database, spread over a year, in 20 experiments, with mixed statuses and latest metrics;
then requests each page `--repeat` times through Django's test client (the whole Django and DRF stack
with token authentication, no HTTP socket) and prints p50 and p99 latencies:

- the first page (newest first, 50 runs), and a deep page: the 50 after the 50,000th run, by cursor
  (and by offset, for comparison);
- filtered first pages (by status, by experiment, by both), and a filtered deep page by cursor;
- ordered by a metric's latest value (first page, and the page its `next` link leads to).

On Postgres it also prints the plan of the deep-page query. Against Postgres (a database of its own):

    createdb -h 127.0.0.1 -U postgres dlsite_runs
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/dlsite_runs REDIS_URL=redis://127.0.0.1:6379/3 \
        .venv/bin/python bench/runs_list.py

Embedded (SQLite in DLSITE_DATA_DIR, ./var by default):

    env -u DATABASE_URL -u REDIS_URL DLSITE_DATA_DIR=/tmp/runs-bench .venv/bin/python bench/runs_list.py
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlparse

REPO_ROOT = Path(__file__).resolve().parent.parent
USERNAME = "bench-runs"
EXPERIMENTS = 20
STATUSES = (("succeeded", 0.7), ("failed", 0.15), ("cancelled", 0.1), ("running", 0.04), ("queued", 0.01))


def seed(total: int):
    """The bench user, with `total` runs (created now unless it has them already)."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from apps.experiments.models import Experiment, Run

    user, _ = get_user_model().objects.get_or_create(username=USERNAME)
    have = Run.objects.filter(owner=user).count()
    if have >= total:
        print(f"{have:,} runs of {USERNAME} already there")
        return user
    experiments = [
        Experiment.objects.get_or_create(owner=user, name=f"sweep-{index:02d}", defaults={"pipeline": "traffic_signs"})[0]
        for index in range(EXPERIMENTS)
    ]
    random.seed(7)
    now = timezone.now()
    created_at = Run._meta.get_field("created_at")
    started = time.perf_counter()
    # Spread over a year, oldest first: auto_now_add would stamp them all with this second.
    created_at.auto_now_add = False
    try:
        for start in range(have, total, 5000):
            runs = []
            for index in range(start, min(start + 5000, total)):
                status = random.choices([s for s, _ in STATUSES], weights=[w for _, w in STATUSES])[0]
                metrics = {} if random.random() < 0.2 else {
                    "val_accuracy": round(random.random(), 4), "loss": round(random.random() * 3, 4)
                }
                runs.append(Run(
                    owner=user, experiment=experiments[index % EXPERIMENTS], pipeline="traffic_signs",
                    params={"epochs": 10, "learning_rate": 0.001, "batch_size": 256, "seed": index},
                    status=status, progress=1.0 if status == "succeeded" else 0.5, latest_metrics=metrics,
                    created_at=now - timedelta(seconds=(total - index) * 315),
                ))
            with transaction.atomic():
                Run.objects.bulk_create(runs, batch_size=1000)
    finally:
        created_at.auto_now_add = True
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE experiments_run")
    print(f"seeded {total - have:,} runs in {time.perf_counter() - started:.1f} s")
    return user


def measure(client, url: str, repeat: int) -> dict:
    client.get(url)  # warm
    latencies = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200, response.content[:500]
    latencies.sort()
    return {
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 1),
        "results": len(response.json()["results"]),
    }


def cursor_after(user, position: int, filters: dict | None = None) -> str:
    """The `cursor` of a next link pointing past the run at `position` (0-based) of the list."""
    from apps.experiments import selectors

    filters = filters or {}
    run = selectors.run_list(user=user, filters=filters)[position]
    return selectors._cursor_encode(selectors._run_order(filters.get("order_by") or "-created"), run, backwards=False)


def explain(user, cursor: str) -> str:
    from django.db import connection

    from apps.experiments import selectors

    if connection.vendor != "postgresql":
        return ""
    backwards, value, run_id = selectors._cursor_decode(cursor, selectors._run_order("-created"))
    runs = selectors._ordered(selectors._run_filtered(user=user, filters={}), selectors._run_order("-created"))
    page = runs.filter(selectors._beyond(selectors._run_order("-created"), value, run_id, backwards=False))[:51]
    return page.explain(analyze=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument(
        "--no-gc-freeze", action="store_true", help="leave the startup objects to the garbage collector's full collections"
    )
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dlsite.settings")
    sys.path.insert(0, str(REPO_ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client
    from rest_framework.authtoken.models import Token

    call_command("migrate", verbosity=0)
    database = settings.DATABASES["default"]
    print(f"database: {database['ENGINE'].rsplit('.', 1)[-1]} {database['NAME']}; {os.cpu_count()} cores")
    user = seed(args.runs)
    token = Token.objects.get_or_create(user=user)[0].key
    client = Client(HTTP_AUTHORIZATION=f"Token {token}")
    middle = args.runs // 2
    deep = cursor_after(user, middle - 1)
    failed_deep = cursor_after(user, 5000 - 1, {"status": "failed"})
    metric_first = client.get("/api/v1/runs/?order_by=-metric:val_accuracy").json()
    metric_next = parse_qs(urlparse(metric_first["next"]).query)["cursor"][0]
    if not args.no_gc_freeze:
        gc.collect()
        gc.freeze()  # as the web server does once started (dlsite/asgi.py)

    cases = {
        "first page": "/api/v1/runs/",
        f"deep page (after run {middle:,}), cursor": f"/api/v1/runs/?cursor={deep}",
        f"deep page (after run {middle:,}), offset": f"/api/v1/runs/?offset={middle}",
        "filtered: status=failed": "/api/v1/runs/?status=failed",
        "filtered: experiment=sweep-07": "/api/v1/runs/?experiment=sweep-07",
        "filtered: experiment + status": "/api/v1/runs/?experiment=sweep-07&status=succeeded",
        "filtered deep: status=failed after 5,000, cursor": f"/api/v1/runs/?status=failed&cursor={failed_deep}",
        "order_by=-metric:val_accuracy, first page": "/api/v1/runs/?order_by=-metric:val_accuracy",
        "order_by=-metric:val_accuracy, second page": f"/api/v1/runs/?order_by=-metric:val_accuracy&cursor={metric_next}",
    }
    print(f"\n{'page of 50 runs (of ' + format(args.runs, ',') + ')':52} {'p50 ms':>8} {'p99 ms':>8}")
    for name, url in cases.items():
        result = measure(client, url, args.repeat)
        print(f"{name:52} {result['p50_ms']:>8} {result['p99_ms']:>8}", flush=True)
    plan = explain(user, deep)
    if plan:
        print("\nplan of the deep page's query:\n" + plan)


if __name__ == "__main__":
    main()
