"""The platform as a benchmark sees it: `manage.py demo` in a process group of its own, a user with
an API token, and helpers to train a run over REST.

Embedded by default (SQLite and the bundled Redis under a data folder); against Postgres and Redis
when DATABASE_URL and REDIS_URL are set, as the platform itself decides.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx

from tests.conftest import wait_for  # one polling helper for tests and benchmarks

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
CREATE_TOKEN = """
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
user, _ = get_user_model().objects.get_or_create(username="bench")
print(Token.objects.get_or_create(user=user)[0].key)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@dataclass
class Platform:
    base_url: str
    port: int
    token: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=self.headers, timeout=60, **kwargs)

    def log_tail(self, characters: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-characters:]


def platform_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    return {**os.environ, "DLSITE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", **overrides}


@contextmanager
def running_platform(data_dir: Path, *, workers: int = 3, **env: str) -> Iterator[Platform]:
    """`manage.py demo` on a free port, up (web and `workers` worker heartbeats) before this yields."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    environment = platform_env(data_dir, DLSITE_PORT=str(port), **env)
    log_path = data_dir / "demo.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "demo"], cwd=REPO_ROOT, env=environment, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,  # one group: Ctrl-C reaches every child
        )
    base_url = f"http://{HOST}:{port}"

    def up():
        if process.poll() is not None:
            raise RuntimeError(f"manage.py demo exited:\n{log_path.read_text()[-4000:]}")
        try:
            health = httpx.get(f"{base_url}/api/v1/health/", timeout=2).json()
        except httpx.HTTPError:
            return None
        return len(health["workers"]) >= workers

    try:
        wait_for(up, timeout=300, interval=0.5, message="the platform to come up")
        token = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", CREATE_TOKEN], cwd=REPO_ROOT, env=environment,
            check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]
        yield Platform(base_url, port, token, data_dir, log_path, process)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_for_run(client: httpx.Client, run_id: int, *, timeout: float = 1800) -> dict:
    def finished():
        run = client.get(f"/api/v1/runs/{run_id}/").json()
        return run if run["status"] in ("succeeded", "failed", "cancelled") else None

    run = wait_for(finished, timeout=timeout, interval=0.2, message=f"run {run_id} to finish")
    if run["status"] != "succeeded":
        raise RuntimeError(f"run {run_id} {run['status']}: {run.get('error')}")
    return run


def train(client: httpx.Client, params: dict, *, pipeline: str = "traffic_signs") -> dict:
    """Submit a run and wait for it; the run's detail once it succeeded."""
    response = client.post("/api/v1/runs/", json={"pipeline": pipeline, "params": params})
    response.raise_for_status()
    return wait_for_run(client, response.json()["id"])


def download_model(client: httpx.Client, run_id: int, destination: Path) -> Path:
    """The run's model folder (model.zip unpacked into `destination`)."""
    artifacts = {artifact["name"]: artifact for artifact in client.get(f"/api/v1/runs/{run_id}/artifacts/").json()}
    response = client.get(artifacts["model.zip"]["download_url"])
    response.raise_for_status()
    destination.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        archive.extractall(destination)
    return destination
