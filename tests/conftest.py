"""Shared fixtures: real Redis (embedded when REDIS_URL is unset), users and API clients, and one real
Celery worker process per test session, running against the test database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def wait_for(predicate, *, timeout: float, interval: float = 0.1, message: str = "condition"):
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {message}")
        time.sleep(interval)


@pytest.fixture(scope="session", autouse=True)
def redis_server():
    """The Redis everything talks to: $REDIS_URL, or the bundled server on the settings' socket."""
    from django.conf import settings

    if os.environ.get("REDIS_URL"):
        yield settings.REDIS_URL
        return
    from dlsite.embedded import start_redis, stop_process

    process = start_redis(settings.REDIS_SOCKET)
    yield settings.REDIS_URL
    if process is not None:
        stop_process(process)


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="alice-password")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="bob-password")


def token_client(user):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    client.token = token.key
    return client


@pytest.fixture
def api(user):
    return token_client(user)


@pytest.fixture
def other_api(other_user):
    return token_client(other_user)


def database_url_for_tests() -> str:
    """The URL of the test database pytest-django created, for processes outside pytest."""
    from django.db import connection

    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or "postgres"
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings_dict['NAME']}"


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, redis_server, tmp_path_factory):
    """One real worker process consuming every queue, against the test database."""
    from django.conf import settings

    from dlsite.celery import app

    with django_db_blocker.unblock():
        database_url = database_url_for_tests()
    app.control.purge()  # messages left over by an earlier, interrupted session
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        REDIS_URL=settings.REDIS_URL,
        DLSITE_DATA_DIR=str(settings.DATA_DIR),
        DLSITE_WORKER_KIND="training",
        DLSITE_WORKER_THREADS="2",
        DLSITE_RUN_FLUSH_INTERVAL="0.2",
        DLSITE_CHECKPOINT_INTERVAL="0",  # tiny epochs: a checkpoint after each, as the tests expect
        DLSITE_WORKER_HEARTBEAT_INTERVAL="1",
        DLSITE_WORKER_NAME="test-worker",
        PYTHONUNBUFFERED="1",
    )
    hostname = f"test-{os.getpid()}@localhost"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "dlsite", "worker", "-Q", ",".join(settings.QUEUES),
             "-c", "1", "--pool", "prefork", "-n", hostname, "--loglevel", "INFO"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    from apps.experiments.models import WorkerHeartbeat

    def worker_ready():
        assert process.poll() is None, f"worker exited early:\n{log_path.read_text()[-3000:]}"
        with django_db_blocker.unblock():
            return WorkerHeartbeat.objects.filter(hostname=hostname).exists()

    wait_for(worker_ready, timeout=120, interval=0.5, message="the Celery worker's first heartbeat")
    process.log_path = log_path
    process.hostname = hostname
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
