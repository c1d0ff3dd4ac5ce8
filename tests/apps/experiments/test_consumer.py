"""`/ws/runs/<id>/` through the real ASGI application and the real Redis channel layer."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.db import transaction
from django.test import Client
from django.utils import timezone

from apps.accounts.websocket import CLOSE_BAD_ORIGIN, CLOSE_NOT_FOUND, CLOSE_UNAUTHORISED
from apps.experiments.events import events_publish
from apps.experiments.models import Metric, Run, RunStatus
from dlsite.asgi import application
from tests.apps.factories import make_run
from tests.apps.websocket import WebsocketCommunicator
from tests.conftest import token_client

# Events go out after commit, and the consumer reads the database from another thread.
pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 5


def run_async(test):
    """Run an async test body on a fresh event loop; database calls go back to this thread."""
    return async_to_sync(test)()


def token_path(user, run: Run | int) -> str:
    run_id = run if isinstance(run, int) else run.pk
    return f"/ws/runs/{run_id}/?token={token_client(user).token}"


def session_headers(user, origin: str | None) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    headers = [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return headers


async def connect(path: str, headers: list | None = None) -> tuple[WebsocketCommunicator, bool, int | None]:
    communicator = WebsocketCommunicator(application, path, headers=headers or [])
    connected, code = await communicator.connect(timeout=TIMEOUT)
    return communicator, connected, code


def publish(run_id: int, events: list[dict]) -> None:
    with transaction.atomic():
        events_publish(run_id=run_id, events=events)


def test_snapshot_then_live_events(user):
    run = make_run(user, status=RunStatus.RUNNING, progress=0.5, progress_message="epoch 5/10", event_seq=7)
    time = timezone.now()
    Metric.objects.create(run=run, key="loss", step=1, value=0.75, time=time)

    path = token_path(user, run)

    async def body():
        communicator, connected, _ = await connect(path)
        assert connected
        snapshot = await communicator.receive_json_from(timeout=TIMEOUT)
        assert snapshot == {
            "type": "snapshot", "seq": 7, "run": run.pk, "status": "running", "attempt": 1, "progress": 0.5,
            "progress_message": "epoch 5/10", "metrics": {"loss": [{"step": 1, "value": 0.75, "time": time.isoformat()}]},
            "error": "",
        }
        await database_sync_to_async(publish)(run.pk, [{"type": "progress", "progress": 0.6, "message": "epoch 6/10"}])
        event = await communicator.receive_json_from(timeout=TIMEOUT)
        assert event == {"type": "progress", "progress": 0.6, "message": "epoch 6/10", "seq": snapshot["seq"] + 1}

        await database_sync_to_async(publish)(run.pk, [{"type": "log", "message": "a"}, {"type": "log", "message": "b"}])
        assert await communicator.receive_json_from(timeout=TIMEOUT) == {"type": "log", "message": "a", "seq": 9}
        assert await communicator.receive_json_from(timeout=TIMEOUT) == {"type": "log", "message": "b", "seq": 10}
        assert await communicator.receive_nothing(timeout=0.2)
        await communicator.disconnect()

    run_async(body)


def test_events_the_snapshot_already_holds_are_dropped(user):
    from apps.experiments.events import events_send

    run = make_run(user, status=RunStatus.RUNNING, event_seq=3)

    path = token_path(user, run)

    async def body():
        communicator, connected, _ = await connect(path)
        assert connected
        assert (await communicator.receive_json_from(timeout=TIMEOUT))["seq"] == 3
        await database_sync_to_async(events_send)(run_id=run.pk, events=[{"type": "log", "message": "old", "seq": 3}])
        await database_sync_to_async(events_send)(run_id=run.pk, events=[{"type": "log", "message": "new", "seq": 4}])
        assert await communicator.receive_json_from(timeout=TIMEOUT) == {"type": "log", "message": "new", "seq": 4}
        await communicator.disconnect()

    run_async(body)


def test_rolled_back_events_are_not_sent(user):
    run = make_run(user, status=RunStatus.RUNNING)

    def publish_then_roll_back():
        try:
            with transaction.atomic():
                events_publish(run_id=run.pk, events=[{"type": "log", "message": "never"}])
                raise RuntimeError("roll back")
        except RuntimeError:
            pass

    path = token_path(user, run)

    async def body():
        communicator, connected, _ = await connect(path)
        assert connected
        await communicator.receive_json_from(timeout=TIMEOUT)
        await database_sync_to_async(publish_then_roll_back)()
        assert await communicator.receive_nothing(timeout=0.3)
        await communicator.disconnect()

    run_async(body)


@pytest.mark.parametrize("status", [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED])
def test_finished_run_gets_its_final_status(user, status):
    run = make_run(user, status=status, progress=1.0, event_seq=12)

    path = token_path(user, run)

    async def body():
        communicator, connected, _ = await connect(path)
        assert connected
        snapshot = await communicator.receive_json_from(timeout=TIMEOUT)
        assert (snapshot["type"], snapshot["status"], snapshot["seq"]) == ("snapshot", status, 12)
        final = await communicator.receive_json_from(timeout=TIMEOUT)
        assert final["type"] == "status"
        assert final["status"] == status
        assert final["seq"] == 12
        await communicator.disconnect()

    run_async(body)


def test_resync_sends_a_fresh_snapshot(user):
    run = make_run(user, status=RunStatus.RUNNING)

    path = token_path(user, run)

    async def body():
        communicator, connected, _ = await connect(path)
        assert connected
        await communicator.receive_json_from(timeout=TIMEOUT)
        await database_sync_to_async(Run.objects.filter(pk=run.pk).update)(progress=0.25, event_seq=5)
        await communicator.send_json_to({"type": "resync"})
        snapshot = await communicator.receive_json_from(timeout=TIMEOUT)
        assert (snapshot["type"], snapshot["progress"], snapshot["seq"]) == ("snapshot", 0.25, 5)
        await communicator.disconnect()

    run_async(body)


def test_another_users_run_is_not_found(user, other_user):
    run = make_run(user, status=RunStatus.RUNNING)

    paths = (token_path(other_user, run), token_path(user, 424242))

    async def body():
        for path in paths:
            communicator, connected, code = await connect(path)
            assert (connected, code) == (False, CLOSE_NOT_FOUND), path

    run_async(body)


def test_no_credentials_is_unauthorised(user):
    run = make_run(user, status=RunStatus.RUNNING)

    async def body():
        for path, headers in [
            (f"/ws/runs/{run.pk}/", []),
            (f"/ws/runs/{run.pk}/", [(b"origin", b"http://localhost")]),
            (f"/ws/runs/{run.pk}/", [(b"origin", b"http://evil.example")]),
            (f"/ws/runs/{run.pk}/?token=not-a-token", []),
        ]:
            communicator, connected, code = await connect(path, headers)
            assert (connected, code) == (False, CLOSE_UNAUTHORISED), (path, headers)

    run_async(body)


def test_session_cookie_needs_an_allowed_origin(user):
    run = make_run(user, status=RunStatus.RUNNING)
    path = f"/ws/runs/{run.pk}/"

    async def body():
        for origin in ("http://evil.example", None, "null", "http://localhost.evil.example"):
            headers = await database_sync_to_async(session_headers)(user, origin)
            communicator, connected, code = await connect(path, headers)
            assert (connected, code) == (False, CLOSE_BAD_ORIGIN), origin

        for origin in ("http://localhost", "http://localhost:8000", "https://127.0.0.1:8443"):
            headers = await database_sync_to_async(session_headers)(user, origin)
            communicator, connected, _ = await connect(path, headers)
            assert connected, origin
            snapshot = await communicator.receive_json_from(timeout=TIMEOUT)
            assert (snapshot["type"], snapshot["run"]) == ("snapshot", run.pk)
            await communicator.disconnect()

    run_async(body)


def test_token_needs_no_origin(user):
    run = make_run(user, status=RunStatus.RUNNING)

    path = token_path(user, run)

    async def body():
        communicator, connected, _ = await connect(path, [(b"origin", b"http://evil.example")])
        assert connected
        assert (await communicator.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
        await communicator.disconnect()

    run_async(body)


def test_subscribers_in_one_process_share_one_group_member(user):
    """Each server process joins a run's group once and hands every batch to all its subscribers."""
    from channels.layers import get_channel_layer

    from apps.experiments.events import run_group_name

    run = make_run(user, status=RunStatus.RUNNING)
    path = token_path(user, run)

    async def group_size() -> int:
        layer = get_channel_layer()
        group = run_group_name(run.pk)
        return await layer.connection(layer.consistent_hash(group)).zcard(layer._group_key(group))

    async def body():
        communicators = [(await connect(path))[0] for _ in range(3)]
        for communicator in communicators:
            assert (await communicator.receive_json_from(timeout=TIMEOUT))["seq"] == 0
        assert await group_size() == 1

        await database_sync_to_async(publish)(run.pk, [{"type": "log", "message": "a"}, {"type": "log", "message": "b"}])
        for communicator in communicators:
            assert await communicator.receive_json_from(timeout=TIMEOUT) == {"type": "log", "message": "a", "seq": 1}
            assert await communicator.receive_json_from(timeout=TIMEOUT) == {"type": "log", "message": "b", "seq": 2}

        for communicator in communicators:
            await communicator.disconnect()
        for _ in range(50):  # the last one out leaves the group in the background
            if await group_size() == 0:
                break
            await asyncio.sleep(0.02)
        assert await group_size() == 0

    run_async(body)


def test_resync_of_a_finished_run_sends_its_final_status_again(user):
    run = make_run(user, status=RunStatus.SUCCEEDED, progress=1.0, event_seq=9)
    path = token_path(user, run)

    async def body():
        communicator, connected, _ = await connect(path)
        assert connected
        assert [(await communicator.receive_json_from(timeout=TIMEOUT))["type"] for _ in range(2)] == ["snapshot", "status"]
        await communicator.send_json_to({"type": "resync"})
        snapshot = await communicator.receive_json_from(timeout=TIMEOUT)
        assert (snapshot["type"], snapshot["status"], snapshot["seq"]) == ("snapshot", "succeeded", 9)
        assert await communicator.receive_json_from(timeout=TIMEOUT) == {
            "type": "status", "status": "succeeded", "seq": 9, "final": True,
        }
        await communicator.disconnect()

    run_async(body)
