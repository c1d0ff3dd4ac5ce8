"""`manage.py demo`: the whole platform on this machine, in one terminal.

Migrates the database, starts the embedded Redis when `REDIS_URL` is unset, creates the demo user
(embedded mode only) and the built-in datasets, then runs a training worker, an inference worker, a
batch/default worker, beat and the ASGI web server as children, each line of their output prefixed
with the child's name. Ctrl-C, SIGTERM or any child exiting stops them all; the command exits
non-zero when a child failed.

The children stay in this process's (foreground) process group, so Ctrl-C in the terminal reaches
each of them, as if they had been started by hand.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.utils.termcolors import colorize
from rest_framework.authtoken.models import Token

from dlsite.embedded import start_redis, stop_process

HOST = "127.0.0.1"
DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo"
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
CELERY = [sys.executable, "-m", "celery", "-A", "dlsite"]
THREAD_CAP_VARIABLES = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
COLORS = ("cyan", "green", "yellow", "magenta", "blue")


@dataclass
class Child:
    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None


def celery_worker(kind: str, queues: str, threads: int) -> Child:
    """A prefork worker with concurrency 1, its maths libraries capped at `threads` threads."""
    command = [
        *CELERY, "worker", "-Q", queues, "-c", "1", "--pool", "prefork", "-n", f"{kind}@%h", "-l", "INFO",
    ]  # fmt: skip
    caps = {variable: str(threads) for variable in THREAD_CAP_VARIABLES}
    return Child(kind, command, {"DLSITE_WORKER_KIND": kind, **caps})


def platform_children(port: int) -> list[Child]:
    cores = len(os.sched_getaffinity(0))
    return [
        # Training uses every core; inference and batch one each, so neither takes more than a core
        # from a training run. One host, one training worker: it sees every GPU, so it takes multi-GPU
        # runs too.
        celery_worker("training", "training,training-multi", threads=cores),
        celery_worker("inference", "inference", threads=1),
        celery_worker("batch", "batch,default", threads=1),
        Child("beat", [*CELERY, "beat", "-s", str(settings.DATA_DIR / "celerybeat-schedule"), "-l", "INFO"]),
        Child(
            "web",
            # The ASGI app handles no lifespan events; "off" spares a misleading log line. Websocket
            # frames: see the Dockerfile's web target.
            [sys.executable, "-m", "uvicorn", "dlsite.asgi:application", "--host", HOST, "--port", str(port),
             "--lifespan", "off", "--ws", "websockets-sansio", "--ws-per-message-deflate", "false"],
        ),
    ]  # fmt: skip


def port_in_use(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


class Command(BaseCommand):
    help = "Run the whole platform here: database, Redis, demo user, workers, beat and the web server."

    def handle(self, *args, **options):
        port = int(os.environ.get("DLSITE_PORT", "8000"))
        if port_in_use(port):
            raise CommandError(f"Port {port} is in use; set DLSITE_PORT to another port.")
        self.output_lock = threading.Lock()
        # On this machine anyone at the keyboard may create an account; elsewhere DLSITE_SIGNUP decides.
        os.environ.setdefault("DLSITE_SIGNUP", "1")

        call_command("migrate", interactive=False)
        redis = None
        if not os.environ.get("REDIS_URL"):
            redis = start_redis(settings.REDIS_SOCKET)
            state = "started" if redis else "already running"
            self.stdout.write(f"Redis {state} on {settings.REDIS_SOCKET}")
        try:
            token = self.create_demo_user()
            call_command("builtin_datasets")
            failure = self.run_children(platform_children(port), port, token)
        finally:
            stop_process(redis)  # last: the workers talk to the broker while they shut down
        if failure:
            raise CommandError(failure)

    def create_demo_user(self) -> str | None:
        """Create demo/demo once and return its API token; None outside the embedded mode."""
        if not settings.EMBEDDED:
            self.stdout.write("DATABASE_URL is set: not creating the demo user (embedded mode only).")
            return None
        # Staff and superuser so that the printed credentials also open /admin/ on this machine.
        user, created = get_user_model().objects.get_or_create(
            username=DEMO_USERNAME, defaults={"is_staff": True, "is_superuser": True}
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
        token, _ = Token.objects.get_or_create(user=user)
        state = "created" if created else "exists"
        self.stdout.write(f"Demo user {DEMO_USERNAME!r} {state}; API token {token.key}")
        return token.key

    def run_children(self, children: list[Child], port: int, token: str | None) -> str | None:
        """Run the children until a signal or one of them exits; return why it failed, if it did."""
        stop_requested = threading.Event()

        def request_stop(signum, frame):
            stop_requested.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, request_stop)

        width = max(len(child.name) for child in children)
        relays = []
        failure = None
        try:
            for index, child in enumerate(children):
                relays.append(self.start(child, self.prefix(child.name, width, COLORS[index % len(COLORS)])))
            announced = False
            while not stop_requested.wait(0.5):
                exited = [child for child in children if child.process.poll() is not None]
                if exited:
                    failure = ", ".join(
                        f"{child.name} exited with code {child.process.returncode}" for child in exited
                    )
                    with self.output_lock:
                        self.stderr.write(f"{failure}; stopping everything.")
                    break
                if not announced and port_in_use(port):
                    self.announce(port, token)
                    announced = True
        finally:
            self.stdout.write("Stopping the workers, beat and the web server...")
            stop_process(*(child.process for child in children), timeout=STOP_TIMEOUT)
            for child in children:
                if child.process is not None and child.process.returncode == -signal.SIGKILL:
                    self.stderr.write(f"{child.name} did not stop within {STOP_TIMEOUT:g} s and was killed.")
            for relay in relays:
                relay.join(timeout=1)
        return failure

    def start(self, child: Child, prefix: str) -> threading.Thread:
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",  # lines show up as they are written, not when a buffer fills
            "DLSITE_DATA_DIR": str(settings.DATA_DIR),  # absolute, whatever the caller's directory
            **child.env,
        }
        child.process = subprocess.Popen(
            child.command,
            cwd=settings.BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        relay = threading.Thread(target=self.relay, args=(child.process, prefix), name=f"relay-{child.name}")
        relay.daemon = True
        relay.start()
        return relay

    def relay(self, process: subprocess.Popen, prefix: str) -> None:
        for line in process.stdout:
            with self.output_lock:
                self.stdout.write(prefix + line.decode(errors="replace").rstrip())
                self.stdout.flush()

    def prefix(self, name: str, width: int, color: str) -> str:
        label = f"{name:<{width}} | "
        return colorize(label, fg=color) if self.stdout.isatty() else label

    def announce(self, port: int, token: str | None) -> None:
        base = f"http://{HOST}:{port}"
        lines = [
            "",
            "dlsite is up:",
            f"  {base}/            web",
            f"  {base}/api/docs/   REST API documentation",
            f"  {base}/admin/      admin",
        ]
        if token:
            lines.append(f"  user {DEMO_USERNAME}, password {DEMO_PASSWORD}, API token {token}")
        lines += ["Press Ctrl-C to stop.", ""]
        with self.output_lock:
            self.stdout.write(self.style.SUCCESS("\n".join(lines)))
