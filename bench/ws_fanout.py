"""Websocket fan-out: many subscribers on one run, events from a worker-like process.

The bench starts the ASGI server (`uvicorn dlsite.asgi:application`, one process, with the websocket
options of `docker/Dockerfile`: `--ws websockets-sansio --ws-per-message-deflate false`) in a fresh
`DLSITE_DATA_DIR`, creates a user, an API token and a running run through the ORM, and opens
`--subscribers` websocket clients (`websockets`' asyncio client) on `/ws/runs/<id>/?token=`, spread
over `--client-processes` processes. A further process then plays the worker's flusher thread: every
1/`--rate` s it writes a batch through `services.run_report` (metric points, progress, a log line:
three events) and sends the batch's events with `events_send`, the path `PlatformRunContext` takes,
each event stamped with its send time (`sent_at`, epoch seconds); at the end it finishes the run with
`services.run_finish`. Each subscriber records, per event, the time from send to receipt, the gaps in
`seq`, any snapshot sent to it mid-stream (a resync), and the final status. With `--lose-redis`, Redis
loses the channel layer's state `--lose-redis-at` seconds in (FLUSHDB, or a restart of the bundled
Redis in embedded mode), and the bench reports how soon each subscriber got a snapshot after it.

Against the configured services (a database of its own: migrations are applied to it):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/dlsite_wsbench REDIS_URL=redis://127.0.0.1:6379/12 \
        .venv/bin/python bench/ws_fanout.py

Embedded (SQLite and the bundled Redis on a unix socket, under a temporary data directory):

    env -u DATABASE_URL -u REDIS_URL .venv/bin/python bench/ws_fanout.py

Latency is measured on one machine's wall clock, where the server, the worker, Redis, the database
and all the clients share the cores: a client process's time to read its sockets is part of it, and
the CPU time of the server and of the clients is printed beside the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
TERMINAL_STATUSES = {"succeeded", "failed", "cancelled"}
METRIC_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
EVENTS_PER_FLUSH = 3  # progress, metrics, a log line


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dlsite.settings")
    import django

    django.setup()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def resident_megabytes(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


# The worker: a flusher-like loop ------------------------------------------------------------------------


def play_worker(*, run_id: int, ticks: int, rate: float, steps_per_tick: int) -> None:
    setup_django()
    from django.utils import timezone

    from channels.layers import get_channel_layer

    from apps.experiments import services
    from apps.experiments.events import events_send
    from apps.experiments.services import RunReport

    get_channel_layer()  # imported and built, as in a worker process that has run before
    loop = asyncio.new_event_loop()  # the flusher keeps one event loop for the run's lifetime
    started = time.monotonic()
    for tick in range(ticks):
        time.sleep(max(0.0, started + tick / rate - time.monotonic()))
        now = timezone.now()
        report = RunReport(
            progress=(tick + 1) / ticks,
            progress_message=f"tick {tick + 1}/{ticks}",
            current_step=(tick + 1) * steps_per_tick,
            metrics=[
                (key, tick * steps_per_tick + step, 1.0 / (1 + tick * steps_per_tick + step), now)
                for step in range(1, steps_per_tick + 1)
                for key in METRIC_KEYS
            ],
            log_lines=[(now, "info", f"tick {tick + 1}/{ticks}: loss={1.0 / (1 + tick):.4f}")],
        )
        outcome = services.run_report(run_id=run_id, attempt=1, report=report)
        sent_at = time.time()
        for event in outcome.events:
            event["sent_at"] = sent_at
        events_send(run_id=run_id, events=outcome.events, loop=loop)
    loop.close()
    finished_at = time.time()
    services.run_finish(run_id=run_id, attempt=1, status="succeeded", reason="bench finished")
    print(json.dumps({"finished_at": finished_at, "run_finish_seconds": time.time() - finished_at}), flush=True)


# The subscribers: one process holds many --------------------------------------------------------------


async def subscribe(uri: str, record: dict, connected: asyncio.Event, done: asyncio.Barrier) -> None:
    from websockets.asyncio.client import connect

    try:
        # Offers permessage-deflate, as browsers do; the server decides.
        async with connect(uri, max_size=None, open_timeout=120, ping_interval=None) as websocket:
            snapshot = json.loads(await websocket.recv())
            assert snapshot["type"] == "snapshot", snapshot
            last_seq = snapshot["seq"]
            connected.set()
            async for text in websocket:
                now = time.time()
                event = json.loads(text)
                if event["type"] == "snapshot":  # a resync: it holds what came before
                    record["snapshots"].append(now)
                    last_seq = max(last_seq, event["seq"])
                    continue
                if event["seq"] > last_seq + 1:
                    record["missing"] += event["seq"] - last_seq - 1
                last_seq = max(last_seq, event["seq"])
                record["received"] += 1
                if "sent_at" in event:
                    record["latency"][event["seq"]] = now - event["sent_at"]
                if event["type"] == "status" and event["status"] in TERMINAL_STATUSES:
                    record["final_status"], record["final_at"] = event["status"], now
                    break
            # Stay connected until every subscriber has its final status: 500 closing handshakes would
            # hold up this process's reading of the later ones.
            await done.wait()
    except Exception as error:  # recorded, not raised: one failed client must not hide the others
        record["error"] = f"{type(error).__name__}: {error}"
    finally:
        connected.set()


async def play_clients(*, uri: str, count: int, final_timeout: float, results: Path) -> None:
    """Connect `count` subscribers, say "ready", and once told the run finished, write what they saw."""
    records = [{"latency": {}, "received": 0, "missing": 0, "snapshots": [], "final_status": None,
                "final_at": None, "error": None} for _ in range(count)]
    tasks = []
    done = asyncio.Barrier(count)
    started = time.monotonic()
    for record in records:
        connected = asyncio.Event()
        tasks.append(asyncio.create_task(subscribe(uri, record, connected, done)))
        await connected.wait()  # one at a time, as a page load would: no burst of handshakes
    print(f"ready {time.monotonic() - started:.2f}", flush=True)
    cpu_before = time.process_time()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "finished"
    _, pending = await asyncio.wait(tasks, timeout=final_timeout)
    for task in pending:
        task.cancel()
    results.write_text(json.dumps({"records": records, "cpu_seconds": time.process_time() - cpu_before}))


# Orchestration ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--client-processes", type=int, default=1, help="processes the subscribers are spread over")
    parser.add_argument("--seconds", type=float, default=30, help="how long the worker sends events")
    parser.add_argument("--rate", type=float, default=2, help="flushes per second")
    parser.add_argument("--steps-per-tick", type=int, default=1, help="metric steps per flush, 4 keys each")
    parser.add_argument("--ws", default="websockets-sansio", help="uvicorn's websocket implementation")
    parser.add_argument("--ws-per-message-deflate", choices=["true", "false"], default="false",
                        help="uvicorn's option of that name; false as deployed")
    parser.add_argument("--lose-redis", choices=["flush", "restart"],
                        help="FLUSHDB Redis (its database must be the bench's own), or restart the bundled one")
    parser.add_argument("--lose-redis-at", type=float, default=10, help="seconds after the first flush")
    parser.add_argument("--final-timeout", type=float, default=30)
    parser.add_argument("--per-event", action="store_true", help="print each event's latencies")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    # The other roles, in processes of their own.
    parser.add_argument("--play-worker", type=int, metavar="RUN_ID", help=argparse.SUPPRESS)
    parser.add_argument("--ticks", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--play-clients", type=int, metavar="COUNT", help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    parser.add_argument("--results", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.play_worker:
        play_worker(run_id=args.play_worker, ticks=args.ticks, rate=args.rate, steps_per_tick=args.steps_per_tick)
        return
    if args.play_clients:
        import uvloop  # the clients' own time is part of the latency: keep it small, as uvicorn does

        uvloop.run(play_clients(uri=args.uri, count=args.play_clients, final_timeout=args.final_timeout, results=args.results))
        return

    data_dir = Path(tempfile.mkdtemp(prefix="wsbench-", dir="/tmp"))  # short: it holds a unix socket
    os.environ["DLSITE_DATA_DIR"] = str(data_dir)
    os.environ["DLSITE_CHANNEL_PREFIX"] = f"wsbench-{os.getpid()}"  # groups private to this bench
    os.environ.setdefault("DLSITE_LOG_LEVEL", "WARNING")
    embedded = "DATABASE_URL" not in os.environ
    if args.lose_redis == "restart" and not embedded:
        parser.error("--lose-redis restart restarts the bundled Redis: embedded mode only")
    from dlsite.embedded import start_redis, stop_process

    redis_process = server = None
    clients: list[subprocess.Popen] = []
    try:
        if embedded:
            redis_process = start_redis(data_dir / "redis.sock")
        setup_django()
        run_id, token = create_run()
        server, port = start_server(args.ws, args.ws_per_message_deflate)
        uri = f"ws://127.0.0.1:{port}/ws/runs/{run_id}/?token={token}"

        connect_started = time.monotonic()
        for index in range(args.client_processes):
            count = args.subscribers // args.client_processes + (index < args.subscribers % args.client_processes)
            command = [sys.executable, __file__, "--play-clients", str(count), "--uri", uri,
                       "--results", str(data_dir / f"clients-{index}.json"), "--final-timeout", str(args.final_timeout)]
            clients.append(subprocess.Popen(command, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for client in clients:
            line = client.stdout.readline()
            assert line.startswith("ready"), f"a client process failed: {line!r}"
        connect_seconds = time.monotonic() - connect_started
        server_megabytes = resident_megabytes(server.pid)

        ticks = max(1, round(args.seconds * args.rate))
        server_cpu = cpu_seconds(server.pid)
        worker = subprocess.Popen(
            [sys.executable, __file__, "--play-worker", str(run_id), "--ticks", str(ticks), "--rate", str(args.rate),
             "--steps-per-tick", str(args.steps_per_tick)],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
        )
        lost_at = None
        if args.lose_redis:
            time.sleep(args.lose_redis_at)
            lost_at = time.time()
            if args.lose_redis == "restart":
                stop_process(redis_process)
                redis_process = start_redis(data_dir / "redis.sock")
            else:
                flush_redis()
        output, _ = worker.communicate()
        assert worker.returncode == 0, "the worker failed"
        worker_said = json.loads(output.strip().splitlines()[-1])
        finished_at = worker_said["finished_at"]
        for client in clients:
            client.stdin.write("finished\n")
            client.stdin.flush()
        for client in clients:
            client.wait(timeout=args.final_timeout + 60)
        server_cpu = cpu_seconds(server.pid) - server_cpu
        outcomes = [json.loads((data_dir / f"clients-{index}.json").read_text()) for index in range(len(clients))]
        figures = summarise(args, embedded, ticks, outcomes, finished_at, connect_seconds, server_cpu, lost_at)
        figures["server_megabytes"] = round(server_megabytes)
        figures["run_finish_ms"] = round(1000 * worker_said["run_finish_seconds"], 1)
        report(args, figures, outcomes)
    finally:
        stop_process(*clients, server, redis_process)
        shutil.rmtree(data_dir, ignore_errors=True)


def create_run() -> tuple[int, str]:
    """A user, an API token and a run in state running, in a database migrated here."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from apps.experiments.models import Experiment, Run

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user(username=f"wsbench-{os.getpid()}-{int(time.time())}")
    token = Token.objects.create(user=user)
    experiment = Experiment.objects.create(owner=user, name="ws-fanout", pipeline="traffic_signs")
    run = Run.objects.create(
        owner=user, experiment=experiment, pipeline="traffic_signs", status="running",
        started_at=timezone.now(), heartbeat_at=timezone.now(),
    )
    connection.close()
    return run.pk, token.key


def flush_redis() -> None:
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    client.close()


def start_server(ws: str, per_message_deflate: str) -> tuple[subprocess.Popen, int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "dlsite.asgi:application", "--host", "127.0.0.1", "--port", str(port),
         "--lifespan", "off", "--ws", ws, "--ws-per-message-deflate", per_message_deflate, "--log-level", "warning"],
        cwd=REPO_ROOT,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, port
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start") from None
            time.sleep(0.1)


def summarise(args, embedded, ticks, outcomes, finished_at, connect_seconds, server_cpu, lost_at) -> dict:
    from django.conf import settings

    records = [record for outcome in outcomes for record in outcome["records"]]
    latencies = [value for record in records for value in record["latency"].values()]
    received = [record["received"] for record in records]
    final_delays = [record["final_at"] - finished_at for record in records if record["final_at"]]
    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    return {
        "mode": "embedded (SQLite, bundled Redis)" if embedded else f"{engine} + Redis",
        "subscribers": args.subscribers,
        "client_processes": args.client_processes,
        "ws": args.ws,
        "compression": args.ws_per_message_deflate == "true",
        "flushes": ticks,
        "rate_hz": args.rate,
        "events_expected": ticks * EVENTS_PER_FLUSH + 1,
        "connect_seconds": round(connect_seconds, 2),
        "latency_ms": {
            "samples": len(latencies),
            **{name: round(1000 * percentile(latencies, fraction), 1)
               for name, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))},
            "max": round(1000 * max(latencies, default=float("nan")), 1),
        },
        "received_min": min(received),
        "received_max": max(received),
        "subscribers_with_gaps": sum(record["missing"] > 0 for record in records),
        "missing_events": sum(record["missing"] for record in records),
        "resync_snapshots": sum(len(record["snapshots"]) for record in records),
        "final_status": sum(record["final_status"] == "succeeded" for record in records),
        "final_status_delay_ms": {
            name: round(1000 * function(final_delays), 1) if final_delays else None
            for name, function in (("min", min), ("median", statistics.median), ("max", max))
        },
        "redis_lost": args.lose_redis,
        "resynced_after_loss_s": recovery(records, lost_at),
        "client_errors": sorted({record["error"] for record in records if record["error"]})[:5],
        "cpu_seconds": {"server": round(server_cpu, 2),
                        "clients": round(sum(outcome["cpu_seconds"] for outcome in outcomes), 2)},
    }


def recovery(records: list[dict], lost_at: float | None) -> dict | None:
    """Seconds from losing Redis to each subscriber's first snapshot after it."""
    if lost_at is None:
        return None
    delays = [min(at for at in record["snapshots"] if at > lost_at) - lost_at
              for record in records if any(at > lost_at for at in record["snapshots"])]
    return {"subscribers": len(delays), "median": round(statistics.median(delays), 2) if delays else None,
            "max": round(max(delays), 2) if delays else None}


def report(args, figures: dict, outcomes: list[dict]) -> None:
    latency = figures["latency_ms"]
    print(f"{figures['mode']}: {figures['subscribers']} subscribers in {figures['client_processes']} client process(es), "
          f"uvicorn --ws {figures['ws']}, permessage-deflate {'on' if figures['compression'] else 'off'}; "
          f"{figures['flushes']} flushes at {figures['rate_hz']:g} Hz, {EVENTS_PER_FLUSH} events each")
    print(f"  connected in {figures['connect_seconds']} s; the server then held {figures['server_megabytes']} MB")
    print(f"  latency worker -> client: p50 {latency['p50']} ms, p90 {latency['p90']} ms, p99 {latency['p99']} ms, "
          f"max {latency['max']} ms ({latency['samples']} samples)")
    print(f"  events per subscriber: {figures['received_min']}..{figures['received_max']} of {figures['events_expected']}; "
          f"subscribers with gaps: {figures['subscribers_with_gaps']} ({figures['missing_events']} events), "
          f"resync snapshots: {figures['resync_snapshots']}")
    delay = figures["final_status_delay_ms"]
    print(f"  final status: {figures['final_status']}/{figures['subscribers']} subscribers, {delay['min']} ms (first), "
          f"{delay['median']} ms (median), {delay['max']} ms (last) after run_finish was called "
          f"(which took {figures['run_finish_ms']} ms)")
    print(f"  CPU seconds while events flowed: server {figures['cpu_seconds']['server']}, "
          f"clients {figures['cpu_seconds']['clients']}")
    if figures["redis_lost"]:
        resynced = figures["resynced_after_loss_s"]
        print(f"  Redis {'flushed' if figures['redis_lost'] == 'flush' else 'restarted'} {args.lose_redis_at:g} s in: "
              f"{resynced['subscribers']} subscribers got a snapshot after it, median {resynced['median']} s, "
              f"the last {resynced['max']} s after")
    if figures["client_errors"]:
        print("  client errors:", figures["client_errors"])
    if args.per_event:
        by_seq: dict[str, list[float]] = {}
        for outcome in outcomes:
            for record in outcome["records"]:
                for seq, value in record["latency"].items():
                    by_seq.setdefault(seq, []).append(value)
        for seq in sorted(by_seq, key=int):
            values = by_seq[seq]
            print(f"  seq {seq}: min {1000 * min(values):.1f} ms, median {1000 * statistics.median(values):.1f} ms, "
                  f"max {1000 * max(values):.1f} ms")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
