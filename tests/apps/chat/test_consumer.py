"""`/ws/chat/<id>/` through the real ASGI application, without a worker: who may connect, bad
messages, a reply that does not come in time, and the stored conversation. Replies streamed by a
real worker are tested in tests/integration/test_chatbot.py."""

from __future__ import annotations

import uuid

import pytest
import redis
from asgiref.sync import async_to_sync
from django.conf import settings

from apps.chat import selectors, services
from apps.accounts.websocket import CLOSE_NOT_FOUND, CLOSE_UNAUTHORISED
from apps.chat.models import ChatMessage, ChatSession
from apps.registry import inference
from apps.registry.inference import LEASE_SUFFIX, PREDICT_TASK
from apps.registry.models import ModelVersion
from dlsite.asgi import application
from tests.apps.factories import make_model_version
from tests.apps.websocket import WebsocketCommunicator
from tests.conftest import token_client

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 5


@pytest.fixture
def chatbot(user):
    return make_model_version(user, name="bot", pipeline="chatbot")


@pytest.fixture(autouse=True)
def own_pending_list(monkeypatch):
    """Requests go to a pending list of the test's own, which no worker serves (not even the test
    session's, if another test started it), removed from the shared Redis afterwards."""
    key = f"dlsite-test:chat-pending:{uuid.uuid4().hex}"
    monkeypatch.setattr(inference, "PENDING_KEY", key)
    yield key
    redis.Redis.from_url(settings.REDIS_URL).delete(key, key + LEASE_SUFFIX)


def path_for(user, model: ModelVersion | int) -> str:
    model_id = model if isinstance(model, int) else model.pk
    return f"/ws/chat/{model_id}/?token={token_client(user).token}"


def run_async(test):
    return async_to_sync(test)()


def test_who_may_connect(user, other_user, chatbot):
    signs = make_model_version(user, name="signs", pipeline="traffic_signs")

    paths = (
        f"/ws/chat/{chatbot.pk}/",  # no credentials
        path_for(other_user, chatbot),  # private to alice
        path_for(user, signs),  # not a chatbot
        path_for(user, 999999),
    )
    own_path, bobs_path = path_for(user, chatbot), path_for(other_user, chatbot)

    async def body():
        results = []
        for path in paths:
            communicator = WebsocketCommunicator(application, path)
            results.append(await communicator.connect(timeout=TIMEOUT))
        owner = WebsocketCommunicator(application, own_path)
        results.append(await owner.connect(timeout=TIMEOUT))
        await owner.disconnect()
        return results

    assert run_async(body) == [
        (False, CLOSE_UNAUTHORISED), (False, CLOSE_NOT_FOUND), (False, CLOSE_NOT_FOUND), (False, CLOSE_NOT_FOUND),
        (True, None),
    ]
    # Shared with bob, or public: he may chat.
    chatbot.visibility = ModelVersion.Visibility.SHARED
    chatbot.save()
    chatbot.shared_with.add(other_user)

    async def shared():
        communicator = WebsocketCommunicator(application, bobs_path)
        connected = await communicator.connect(timeout=TIMEOUT)
        await communicator.disconnect()
        return connected

    assert run_async(shared) == (True, None)


def test_bad_messages_get_an_error_and_the_socket_stays_open(user, chatbot):
    path = path_for(user, chatbot)

    async def body():
        communicator = WebsocketCommunicator(application, path)
        assert await communicator.connect(timeout=TIMEOUT) == (True, None)
        errors = []
        for text in ("not json", '{"text": "hi"}', '{"message": "   "}', '["hi"]', '{"message": "' + "x" * 2001 + '"}'):
            await communicator.send_input({"type": "websocket.receive", "text": text})
            errors.append(await communicator.receive_json_from(timeout=TIMEOUT))
        await communicator.send_json_to({"type": "history"})
        history = await communicator.receive_json_from(timeout=TIMEOUT)
        await communicator.disconnect()
        return errors, history

    errors, history = run_async(body)
    assert [error["type"] for error in errors] == ["error"] * 5
    assert errors[0]["message"] == 'Expected a JSON object such as {"message": "hello"}.'
    assert errors[1]["message"] == errors[2]["message"] == errors[3]["message"] == (
        'message: required, a non-empty string, as in {"message": "hello"}.'
    )
    assert errors[4]["message"] == "message: at most 2000 characters."
    assert history == {"type": "history", "session": None, "messages": []}
    assert not ChatMessage.objects.exists()


def test_a_reply_that_does_not_come_in_time_is_an_error_and_the_message_is_kept(
    user, chatbot, settings, sent_tasks, own_pending_list
):
    settings.PREDICT_TIMEOUT = 0.5
    path = path_for(user, chatbot)

    async def body():
        communicator = WebsocketCommunicator(application, path)
        await communicator.connect(timeout=TIMEOUT)
        await communicator.send_json_to({"message": "anyone there?"})
        error = await communicator.receive_json_from(timeout=TIMEOUT)
        await communicator.send_json_to({"type": "history"})
        history = await communicator.receive_json_from(timeout=TIMEOUT)
        await communicator.disconnect()
        return error, history

    error, history = run_async(body)
    assert error == {"type": "error", "message": "No reply within 0.5 s; try again later."}
    # The request was handed to the inference queue, for its pending list.
    assert [(name, args) for name, args, _ in sent_tasks] == [(PREDICT_TASK, [own_pending_list])]
    session = ChatSession.objects.get()
    assert (session.owner, session.model_version) == (user, chatbot)
    assert [(m["role"], m["text"]) for m in history["messages"]] == [("user", "anyone there?")]
    assert history["session"] == session.pk


def test_selectors_resume_the_latest_conversation(user, other_user, chatbot):
    first = services.chat_session_start(user=user, model_version=chatbot)
    second = services.chat_session_start(user=user, model_version=chatbot)
    conversation = services.Conversation(user, chatbot, first)
    services.chat_messages_add([
        services.NewMessage(conversation, ChatMessage.Role.USER, "hello"),
        services.NewMessage(conversation, ChatMessage.Role.BOT, "hi.", latency_ms=12.5),
    ])
    assert selectors.chat_session_latest(user=user, model_version=chatbot) == first  # touched last
    assert selectors.chat_session_latest(user=other_user, model_version=chatbot) is None
    assert [(m.role, m.text) for m in selectors.chat_message_list(session=first)] == [("user", "hello"), ("bot", "hi.")]
    assert [m.text for m in selectors.chat_message_list(session=first, limit=1)] == ["hi."]
    assert list(selectors.chat_session_list(user=user)) == [first, second]


def test_the_writer_stores_batches_in_order_and_a_bad_message_spoils_only_itself(user, other_user, chatbot):
    from apps.chat.writer import writer

    other_bot = make_model_version(other_user, name="other", pipeline="chatbot")
    ours = services.Conversation(user, chatbot)
    doomed = services.Conversation(other_user, other_bot)
    ModelVersion.objects.filter(pk=other_bot.pk).delete()  # gone while its chat was going on

    async def body():
        futures = [writer().add(services.NewMessage(ours, ChatMessage.Role.USER, "hello"))]
        futures.append(writer().add(services.NewMessage(doomed, ChatMessage.Role.USER, "anyone?")))
        futures += [writer().add(services.NewMessage(ours, role, text)) for role, text in (("bot", "hi."), ("user", "bye"))]
        await futures[-1]
        return [future.done() for future in futures]

    assert run_async(body) == [True] * 4
    session = ChatSession.objects.get()  # ours only; the doomed conversation's start was rolled back
    assert ours.session == session and doomed.session is None
    assert [(m.role, m.text) for m in selectors.chat_message_list(session=session)] == [
        ("user", "hello"), ("bot", "hi."), ("user", "bye"),
    ]
