"""A `/ws/runs/<id>/` subscriber catches up when Redis loses the channel layer's state mid-stream.

Flushed or restarted, Redis forgets the run's group (so nothing reaches the server process any more)
and the messages on their way. The channel layer here runs on a Redis server of the test's own (the
bundled one, on a unix socket), so that flushing or restarting it disturbs nobody else.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from apps.experiments import services
from apps.experiments.events import events_send
from apps.experiments.models import TERMINAL_STATUSES, Run, RunStatus
from apps.experiments.services import RunReport
from dlsite.asgi import application
from dlsite.embedded import start_redis, stop_process
from tests.apps.factories import make_run
from tests.apps.websocket import WebsocketCommunicator
from tests.conftest import token_client

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 10
RESYNC_INTERVAL = 0.2


@pytest.fixture
def private_redis(settings):
    """The channel layer on a Redis server of this test's own, which it may flush and restart."""
    directory = Path(tempfile.mkdtemp(prefix="dlsite-resync-", dir="/tmp"))  # short: a socket lives here
    socket_path = directory / "redis.sock"
    server = SimpleNamespace(process=start_redis(socket_path))
    layer = settings.CHANNEL_LAYERS["default"]
    hosts = [{"address": f"unix://{socket_path}", "socket_timeout": None}]
    settings.CHANNEL_LAYERS = {"default": {**layer, "CONFIG": {**layer["CONFIG"], "hosts": hosts}}}
    settings.RUN_EVENTS_RESYNC_INTERVAL = RESYNC_INTERVAL

    def flush():
        client = redis.Redis(unix_socket_path=str(socket_path))
        client.flushdb()
        client.close()

    def restart():
        stop_process(server.process)
        server.process = start_redis(socket_path)

    yield SimpleNamespace(flush=flush, restart=restart)
    stop_process(server.process)
    shutil.rmtree(directory, ignore_errors=True)


def report_progress(run_id: int, value: float) -> None:
    """What the worker's flusher does: write the batch, then send its events."""
    outcome = services.run_report(run_id=run_id, attempt=1, report=RunReport(progress=value))
    events_send(run_id=run_id, events=outcome.events)


def progress(value: float) -> dict:
    return {"type": "progress", "progress": value, "message": ""}


async def receive(communicator: WebsocketCommunicator) -> dict:
    return await communicator.receive_json_from(timeout=TIMEOUT)


async def follow(communicator: WebsocketCommunicator, state: dict, *, until_seq: int) -> dict:
    """Apply messages to `state` as the browser does, up to event `until_seq`; events must not skip one."""
    while state["seq"] < until_seq:
        message = await receive(communicator)
        if message["type"] != "snapshot":
            assert message["seq"] == state["seq"] + 1, (state, message)
        elif message["status"] in TERMINAL_STATUSES:  # the final status follows a finished run's snapshot
            final = await receive(communicator)
            assert final == {"type": "status", "status": message["status"], "seq": message["seq"], "final": True}
        state = {**state, **message}
    return state


@pytest.mark.parametrize("lose_state", ["flush", "restart"])
def test_subscriber_catches_up_after_redis_loses_its_state(user, private_redis, lose_state):
    run = make_run(user, status=RunStatus.RUNNING)
    path = f"/ws/runs/{run.pk}/?token={token_client(user).token}"

    async def body():
        communicator = WebsocketCommunicator(application, path)
        assert await communicator.connect(timeout=TIMEOUT) == (True, None)
        assert (await receive(communicator))["seq"] == 0

        for value in (0.1, 0.2):
            await database_sync_to_async(report_progress)(run.pk, value)
        assert [await receive(communicator) for _ in range(2)] == [{**progress(0.1), "seq": 1}, {**progress(0.2), "seq": 2}]

        await database_sync_to_async(getattr(private_redis, lose_state))()
        # Sent into the void: the run's group is gone (and, while Redis restarts, Redis itself).
        for value in (0.3, 0.4):
            await database_sync_to_async(report_progress)(run.pk, value)

        # Events stop, so the server looks: it joins the group again, and the database says seq 4.
        snapshot = await receive(communicator)
        assert (snapshot["type"], snapshot["seq"], snapshot["progress"]) == ("snapshot", 4, 0.4)

        # Live again: later events, then the final status. Each comes itself, or in a snapshot if the
        # server looked at the database before it arrived.
        await database_sync_to_async(report_progress)(run.pk, 0.5)
        state = await follow(communicator, {"seq": 4}, until_seq=5)
        assert state["progress"] == 0.5
        await database_sync_to_async(services.run_finish)(run_id=run.pk, attempt=1, status=RunStatus.SUCCEEDED)
        state = await follow(communicator, state, until_seq=6)
        assert state["status"] == RunStatus.SUCCEEDED
        assert await communicator.receive_nothing(timeout=3 * RESYNC_INTERVAL)
        await communicator.disconnect()

    async_to_sync(body)()


def test_final_status_lost_with_redis_still_arrives(user, private_redis):
    run = make_run(user, status=RunStatus.RUNNING)
    path = f"/ws/runs/{run.pk}/?token={token_client(user).token}"

    async def body():
        communicator = WebsocketCommunicator(application, path)
        assert await communicator.connect(timeout=TIMEOUT) == (True, None)
        assert (await receive(communicator))["seq"] == 0

        await database_sync_to_async(private_redis.flush)()
        await database_sync_to_async(services.run_finish)(run_id=run.pk, attempt=1, status=RunStatus.FAILED, error="boom")

        snapshot = await receive(communicator)
        assert (snapshot["type"], snapshot["seq"], snapshot["status"], snapshot["error"]) == ("snapshot", 1, "failed", "boom")
        assert await receive(communicator) == {"type": "status", "status": "failed", "seq": 1, "final": True}
        await communicator.disconnect()

    async_to_sync(body)()


def test_a_skipped_seq_gets_a_snapshot_in_its_place(user):
    """Channels drops messages to full channels: the next event that does arrive shows the gap."""
    run = make_run(user, status=RunStatus.RUNNING, progress=0.3, event_seq=3)
    path = f"/ws/runs/{run.pk}/?token={token_client(user).token}"

    async def body():
        communicator = WebsocketCommunicator(application, path)
        assert await communicator.connect(timeout=TIMEOUT) == (True, None)
        assert (await receive(communicator))["seq"] == 3

        # Event 4 was lost on the way; 5 and 6 arrive in one batch. The database has them all.
        await database_sync_to_async(Run.objects.filter(pk=run.pk).update)(event_seq=6, progress=0.6)
        await database_sync_to_async(events_send)(
            run_id=run.pk, events=[{**progress(0.5), "seq": 5}, {**progress(0.6), "seq": 6}]
        )
        snapshot = await receive(communicator)
        assert (snapshot["type"], snapshot["seq"], snapshot["progress"]) == ("snapshot", 6, 0.6)
        assert await communicator.receive_nothing(timeout=0.2)  # 6 is in the snapshot

        await database_sync_to_async(report_progress)(run.pk, 0.7)
        assert await receive(communicator) == {**progress(0.7), "seq": 7}
        await communicator.disconnect()

    async_to_sync(body)()
