"""Recovery benchmark: SIGKILL the training worker at random moments and count the runs that still
finish correctly (exactly one `succeeded`, one model version, every epoch's metrics once), and the time
each kill costs against an undisturbed run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/dlsite_bench REDIS_URL=redis://127.0.0.1:6379/9 \\
        .venv/bin/python bench/recovery.py --kills 20

It uses the recovery tests' harness: a private Redis, workers in process groups of their own (a kill
takes the main process and its pool child together, like a lost host), beat running the reaper every
second, and a run counted lost after 3 s without heartbeat. The database is $DATABASE_URL (Postgres
recommended), migrated first.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dlsite.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from apps.experiments import services  # noqa: E402
from apps.experiments.models import Metric, Run, RunStatus  # noqa: E402
from apps.registry.models import ModelVersion  # noqa: E402
from tests.conftest import wait_for  # noqa: E402
from tests.integration.test_recovery import Platform  # noqa: E402

PARAMS = {"epochs": 6, "images_per_class": 10, "batch_size": 32}


def database_url() -> str:
    if "DATABASE_URL" in os.environ:
        return os.environ["DATABASE_URL"]
    return f"sqlite:///{connection.settings_dict['NAME']}"


def finished(run_id: int, timeout: float = 600) -> Run:
    return wait_for(
        lambda: (run := Run.objects.get(pk=run_id)).status in (RunStatus.SUCCEEDED, RunStatus.FAILED) and run,
        timeout=timeout, interval=0.2, message=f"run {run_id}",
    )


def correct(run: Run) -> bool:
    history = [change.to_status for change in run.status_changes.all()]
    steps = sorted(Metric.objects.filter(run=run, key="loss").values_list("step", flat=True))
    return (
        run.status == RunStatus.SUCCEEDED
        and history.count("succeeded") == 1
        and ModelVersion.objects.filter(run=run).count() == 1
        and steps == list(range(1, PARAMS["epochs"] + 1))
    )


def wall_seconds(run: Run) -> float:
    return (run.finished_at - run.created_at).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    arguments = parser.parse_args()
    random.seed(arguments.seed)
    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="recovery-bench")

    with tempfile.TemporaryDirectory() as scratch:
        platform = Platform(Path(scratch), database_url(), Path(settings.DATA_DIR))
        services.enqueue = platform.enqueue  # task messages go to the private broker
        platform.start_redis()
        try:
            worker = platform.start_worker("worker-0")
            platform.start_beat()
            finished(platform.submit(user, PARAMS).pk)  # warm-up: generates and caches the dataset
            baseline_seconds = wall_seconds(finished(platform.submit(user, PARAMS).pk))
            print(f"undisturbed run on a warm worker: {baseline_seconds:.1f} s")

            outcomes = []
            for kill in range(1, arguments.kills + 1):
                run = platform.submit(user, PARAMS)
                wait_for(lambda: Run.objects.get(pk=run.pk).status == RunStatus.RUNNING, timeout=120, message="claim")
                time.sleep(random.uniform(0.5, baseline_seconds * 0.8))  # a random moment of the run
                platform.kill(worker)
                killed = Run.objects.get(pk=run.pk)
                killed_at, was_running = killed.current_step, killed.status == RunStatus.RUNNING
                worker = platform.start_worker(f"worker-{kill}")
                run = finished(run.pk)
                ok = correct(run)
                lost = wall_seconds(run) - baseline_seconds
                if not was_running:  # the run had finished before the kill: nothing to recover
                    print(f"kill {kill:2d}: after the run finished ({run.status}); not counted")
                    continue
                outcomes.append((ok, lost))
                print(
                    f"kill {kill:2d}: after epoch {killed_at}, resumed from {run.resumed_from_step}, "
                    f"attempts {run.attempt}, {'correct' if ok else 'WRONG: ' + run.status}, +{lost:.1f} s"
                )
        finally:
            platform.stop()

    losses = [lost for _, lost in outcomes]
    print()
    print(f"runs killed mid-run that resumed and finished correctly: {sum(ok for ok, _ in outcomes)}/{len(outcomes)}")
    print(f"time lost per kill: median {statistics.median(losses):.1f} s, max {max(losses):.1f} s "
          "(the workers' heartbeat timeout is 3 s; a new worker's start-up and the epoch in progress "
          "since the last checkpoint come on top)")


if __name__ == "__main__":
    main()
