"""`make demo`'s platform end to end, in the embedded setup (SQLite, bundled Redis, three workers, beat,
the ASGI server): a user submits a tiny run over REST, follows it on the websocket, predicts with it,
and Ctrl-C stops everything."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from django.conf import settings
from websockets.sync.client import connect

from tests.conftest import REPO_ROOT, wait_for
from tests.integration.test_worker import TINY, sign_png

pytestmark = [pytest.mark.e2e, pytest.mark.tf]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def demo(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DLSITE_DATA_DIR=str(tmp_path / "var"), DLSITE_PORT=str(port), PYTHONUNBUFFERED="1",
               DLSITE_RUN_FLUSH_INTERVAL="0.3")
    log_path = tmp_path / "demo.log"
    with open(log_path, "w") as log:
        # Its own process group, so the test can press "Ctrl-C" for the whole group, as a terminal does.
        process = subprocess.Popen(
            [sys.executable, "manage.py", "demo"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"

    def healthy():
        assert process.poll() is None, f"demo exited:\n{log_path.read_text()[-4000:]}"
        try:
            body = httpx.get(f"{base}/api/v1/health/", timeout=2).json()
        except httpx.HTTPError:
            return None
        return body if len(body["workers"]) >= 3 else None

    try:
        health = wait_for(healthy, timeout=240, interval=1, message="the demo platform to come up")
        yield base, health, process, log_path
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_demo_trains_streams_and_predicts(demo):
    base, health, process, log_path = demo
    assert health["database"]["ok"] and health["database"]["vendor"] == "sqlite"
    assert health["redis"]["ok"]
    assert {queue for worker in health["workers"] for queue in worker["queues"]} == set(settings.QUEUES)

    token = httpx.post(f"{base}/api/v1/auth/token/", json={"username": "demo", "password": "demo"}).json()["token"]
    headers = {"Authorization": f"Token {token}"}
    run = httpx.post(f"{base}/api/v1/runs/", json={"pipeline": "traffic_signs", "params": TINY}, headers=headers)
    assert run.status_code == 201, run.text
    run_id = run.json()["id"]

    ws_url = base.replace("http", "ws") + f"/ws/runs/{run_id}/?token={token}"
    events = []
    with connect(ws_url, open_timeout=10) as websocket:
        snapshot = json.loads(websocket.recv(timeout=10))
        assert snapshot["type"] == "snapshot" and snapshot["run"] == run_id
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            event = json.loads(websocket.recv(timeout=deadline - time.monotonic()))
            events.append(event)
            if event["type"] == "status" and event["status"] in ("succeeded", "failed", "cancelled"):
                break
    statuses = [e["status"] for e in events if e["type"] == "status"]
    assert statuses[-1] == "succeeded", (statuses, log_path.read_text()[-4000:])
    assert "running" in statuses or snapshot["status"] == "running"
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert any(e["type"] == "metrics" and "val_accuracy" in e["metrics"] for e in events)
    assert any(e["type"] == "artifact" and e["name"] == "confusion_matrix.png" for e in events)

    model_id = httpx.get(f"{base}/api/v1/runs/{run_id}/", headers=headers).json()["model_version"]["id"]
    predicted = httpx.post(
        f"{base}/api/v1/models/{model_id}/predict/", files={"file": ("sign.png", sign_png(), "image/png")},
        headers=headers, timeout=30,
    )
    assert predicted.status_code == 200, predicted.text
    assert len(predicted.json()["predictions"]) == 5

    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=40) is not None
