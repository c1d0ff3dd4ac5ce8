"""Metric ingestion: points per second through `POST /api/v1/runs/{id}/metrics/`, beside MLflow's
log-batch to an MLflow tracking server with a SQLite store.

dlsite: the bench starts the ASGI server (`uvicorn dlsite.asgi:application`, `--uvicorn-workers`
processes) against the configured database and Redis, applies migrations, creates a user and an API
token through the ORM, then for each batch size and concurrency creates external runs over REST (one
per client stream) and posts `--points` points in batches, the JSON encoded per request as a client
would. Afterwards it counts the rows, so that a lost point would show.

MLflow: `mlflow server --backend-store-uri sqlite:///...` (its defaults: uvicorn, 4 workers) from the
MLflow virtualenv, and `MlflowClient().log_batch` with the same batches, run by that virtualenv's
Python in a subprocess (the MLflow client sends at most 1,000 metrics per request and splits larger
batches itself). Skipped with `--no-mlflow` or when the virtualenv is missing.

Against Postgres and Redis (a database of its own: migrations are applied to it):

    createdb -h 127.0.0.1 -U postgres dlsite_ingest
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/dlsite_ingest REDIS_URL=redis://127.0.0.1:6379/3 \
        .venv/bin/python bench/metric_ingestion.py

Embedded (SQLite and the bundled Redis under a temporary data directory):

    env -u DATABASE_URL -u REDIS_URL .venv/bin/python bench/metric_ingestion.py

Every process (server, database, Redis, the clients) shares the machine's cores; the figures say what
one host does, clients included.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
MLFLOW_PYTHON = Path(os.environ.get("MLFLOW_VENV", "/work/mlflow-venv")) / "bin" / "python"
MLFLOW_CLI = MLFLOW_PYTHON.parent / "mlflow"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@contextmanager
def running(command: list[str], *, env: dict, health_url: str, log_path: Path):
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        wait_until_up(health_url, process, log_path)
        yield process
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


def batches_of(total: int, batch_size: int, stream: int, prefix: str = "") -> list[list[tuple[str, float, int, int]]]:
    """(key, value, step, timestamp ms) points, `batch_size` at a time: every key at every step."""
    start_ms = 1_700_000_000_000 + stream
    points = [
        (prefix + KEYS[index % len(KEYS)], 1.0 / (index + 1), index // len(KEYS), start_ms + index)
        for index in range(total)
    ]
    return [points[start : start + batch_size] for start in range(0, total, batch_size)]


def summarise(name: str, points: int, seconds: float, latencies: list[float]) -> dict:
    latencies = sorted(latencies)
    return {
        "name": name,
        "points": points,
        "seconds": round(seconds, 3),
        "points_per_second": round(points / seconds),
        "request_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "request_p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 1),
    }


# dlsite ---------------------------------------------------------------------------------------------


def dlsite_token() -> str:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="bench-ingestion")
    return Token.objects.get_or_create(user=user)[0].key


def dlsite_stream(base_url: str, token: str, run_id: int, batches, latencies: list[float]) -> None:
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Token {token}"}, timeout=120) as client:
        for batch in batches:
            body = json.dumps({"metrics": [
                {"key": key, "value": value, "step": step, "timestamp": timestamp}
                for key, value, step, timestamp in batch
            ]})
            started = time.perf_counter()
            response = client.post(f"/api/v1/runs/{run_id}/metrics/", content=body,
                                   headers={"Content-Type": "application/json"})
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"{response.status_code}: {response.text[:500]}")


def dlsite_case(base_url: str, token: str, *, total: int, batch_size: int, concurrency: int) -> dict:
    from apps.experiments.models import Metric

    with httpx.Client(base_url=base_url, headers={"Authorization": f"Token {token}"}, timeout=60) as client:
        run_ids = []
        for _ in range(concurrency):
            response = client.post("/api/v1/runs/", json={"external": True, "experiment": "ingestion-bench"})
            response.raise_for_status()
            run_ids.append(response.json()["id"])
        # A warm-up request per stream: connections and the server's first-request costs.
        for run_id in run_ids:
            dlsite_stream(base_url, token, run_id, batches_of(batch_size, batch_size, 0, prefix="warm_up_"), [])
    per_stream = total // concurrency
    latencies: list[float] = []
    threads = [
        threading.Thread(target=dlsite_stream, args=(base_url, token, run_id, batches_of(per_stream, batch_size, stream), latencies))
        for stream, run_id in enumerate(run_ids)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    stored = Metric.objects.filter(run_id__in=run_ids).exclude(key__startswith="warm_up_").count()
    expected = per_stream * concurrency
    if stored != expected:
        raise RuntimeError(f"{stored} points stored, {expected} sent")
    return summarise(f"dlsite batch={batch_size} concurrency={concurrency}", per_stream * concurrency, seconds, latencies)


def bench_dlsite(args, data_dir: Path) -> list[dict]:
    port = free_port()
    env = {**os.environ, "DLSITE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", "DLSITE_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "uvicorn", "dlsite.asgi:application", "--host", HOST, "--port", str(port),
               "--lifespan", "off", "--no-access-log", "--log-level", "warning",
               "--workers", str(args.uvicorn_workers)]
    base_url = f"http://{HOST}:{port}"
    token = dlsite_token()
    results = []
    with running(command, env=env, health_url=f"{base_url}/api/v1/health/", log_path=data_dir / "uvicorn.log"):
        for batch_size in args.batch_sizes:
            for concurrency in args.concurrency:
                results.append(dlsite_case(base_url, token, total=args.points, batch_size=batch_size, concurrency=concurrency))
                print(json.dumps(results[-1]), flush=True)
    return results


# MLflow ---------------------------------------------------------------------------------------------

MLFLOW_CLIENT = r"""
import json, statistics, sys, threading, time
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

tracking_uri, total, batch_size, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
client = MlflowClient(tracking_uri)
experiment_id = client.create_experiment(f"ingestion-{batch_size}-{concurrency}-{time.time()}")
runs = [client.create_run(experiment_id).info.run_id for _ in range(concurrency)]


def batches(count, stream, prefix=""):
    start_ms = 1_700_000_000_000 + stream
    points = [Metric(prefix + KEYS[i % len(KEYS)], 1.0 / (i + 1), start_ms + i, i // len(KEYS)) for i in range(count)]
    return [points[s : s + batch_size] for s in range(0, count, batch_size)]


for run_id in runs:  # warm-up
    client.log_batch(run_id, metrics=batches(batch_size, 0, prefix="warm_up_")[0])
latencies = []


def stream(run_id, index):
    for batch in batches(total // concurrency, index):
        started = time.perf_counter()
        client.log_batch(run_id, metrics=batch)
        latencies.append(time.perf_counter() - started)


threads = [threading.Thread(target=stream, args=(run_id, index)) for index, run_id in enumerate(runs)]
started = time.perf_counter()
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
seconds = time.perf_counter() - started
stored = sum(len(client.get_metric_history(run_id, key)) for run_id in runs for key in KEYS)
print(json.dumps({"seconds": seconds, "latencies": latencies, "stored": stored}))
"""


def bench_mlflow(args, work_dir: Path) -> list[dict]:
    store = work_dir / "mlflow"
    store.mkdir(parents=True, exist_ok=True)
    port = 5055 if args.mlflow_port is None else args.mlflow_port
    env = {**os.environ, "MLFLOW_TRACKING_URI": ""}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    command = [str(MLFLOW_CLI), "server", "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
               "--default-artifact-root", str(store / "artifacts"), "--host", HOST, "--port", str(port)]
    results = []
    with running(command, env=env, health_url=f"http://{HOST}:{port}/health", log_path=store / "server.log"):
        for batch_size in args.batch_sizes:
            for concurrency in args.concurrency:
                completed = subprocess.run(
                    [str(MLFLOW_PYTHON), "-c", MLFLOW_CLIENT, f"http://{HOST}:{port}", str(args.mlflow_points),
                     str(batch_size), str(concurrency)],
                    env=env, capture_output=True, text=True, timeout=3600,
                )
                if completed.returncode != 0:
                    raise RuntimeError(completed.stderr[-3000:])
                outcome = json.loads(completed.stdout.strip().splitlines()[-1])
                points = args.mlflow_points // concurrency * concurrency
                expected = points
                if outcome["stored"] != expected:
                    raise RuntimeError(f"MLflow stored {outcome['stored']} points, {expected} sent")
                results.append(summarise(f"MLflow batch={batch_size} concurrency={concurrency}", points,
                                         outcome["seconds"], outcome["latencies"]))
                print(json.dumps(results[-1]), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=200_000, help="points per case for dlsite")
    parser.add_argument("--mlflow-points", type=int, default=40_000, help="points per case for MLflow (slower)")
    parser.add_argument("--batch-sizes", type=lambda text: [int(x) for x in text.split(",")], default=[1000, 10_000])
    parser.add_argument("--concurrency", type=lambda text: [int(x) for x in text.split(",")], default=[1, 4])
    parser.add_argument("--uvicorn-workers", type=int, default=1)
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--mlflow-port", type=int, default=None)
    args = parser.parse_args()

    work_dir = Path(tempfile.mkdtemp(prefix="dlsite-ingestion-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dlsite.settings")
    os.environ["DLSITE_DATA_DIR"] = str(work_dir / "data")
    sys.path.insert(0, str(REPO_ROOT))
    import django

    django.setup()
    import logging

    from django.conf import settings

    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise

    redis_process = None
    if not os.environ.get("REDIS_URL"):
        from dlsite.embedded import start_redis

        redis_process = start_redis(settings.REDIS_SOCKET)
    database = settings.DATABASES["default"]
    print(f"dlsite against {database['ENGINE'].rsplit('.', 1)[-1]} {database['NAME']}, Redis {settings.REDIS_URL}, "
          f"{args.uvicorn_workers} uvicorn worker(s), {os.cpu_count()} cores", flush=True)
    try:
        results = bench_dlsite(args, Path(settings.DATA_DIR))
        if not args.no_mlflow and MLFLOW_PYTHON.exists():
            results += bench_mlflow(args, work_dir)
    finally:
        if redis_process is not None:
            from dlsite.embedded import stop_process

            stop_process(redis_process)
        shutil.rmtree(work_dir, ignore_errors=True)

    print()
    print(f"{'case':42} {'points/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for result in results:
        print(f"{result['name']:42} {result['points_per_second']:>10,} {result['request_p50_ms']:>8} {result['request_p99_ms']:>8}")


if __name__ == "__main__":
    main()
