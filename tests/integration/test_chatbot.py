"""A chatbot through the real platform: upload dialogue pairs, train a tiny model on the session's
Celery worker, predict over REST, and chat over the websocket with replies streamed by the worker;
and a Cornell corpus uploaded as a zip (the real sample when DLSITE_REALDATA_DIR is set), validated
and trained on."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync

from apps.accounts.websocket import CLOSE_NOT_FOUND
from apps.chat.models import ChatMessage, ChatSession
from apps.experiments.models import Run, RunStatus
from dlsite.asgi import application
from tests.apps.websocket import WebsocketCommunicator
from tests.conftest import wait_for

# The run takes about a minute on an idle 2-core machine; the limits leave room for a busy one.
pytestmark = [pytest.mark.worker, pytest.mark.tf, pytest.mark.django_db(transaction=True), pytest.mark.timeout(900)]

DIALOGUES = {
    "hello": "hi there, how are you?",
    "how are you?": "i'm fine, thank you.",
    "what is your name?": "i don't know.",
    "bye": "see you!",
    "do you like music?": "yes, i love jazz.",
    "where do you live?": "in a small town.",
    "what time is it?": "it's late.",
    "are you a robot?": "i am a chatbot.",
    "tell me a joke": "i'm not funny.",
    "good morning": "good morning to you!",
}
PARAMS = {"epochs": 12, "units": 32, "layers": 1, "batch_size": 32, "optimizer": "adam", "learning_rate": 0.01}
TIMEOUT = 30


def dialogue_zip() -> io.BytesIO:
    lines = "".join(f"{question}\t{answer}\n" for question, answer in DIALOGUES.items()) * 20
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("dialogues/pairs.tsv", lines)
    buffer.seek(0)
    buffer.name = "dialogues.zip"
    return buffer


def cornell_zip(tmp_path: Path) -> tuple[io.BytesIO, Path]:
    """The real sample's two files, or (without it) DIALOGUES as 20 films' conversations in the format."""
    sample = Path(os.environ.get("DLSITE_REALDATA_DIR") or "/nonexistent") / "cornell"
    if not sample.is_dir():
        sample = tmp_path / "cornell"
        sample.mkdir()
        lines, conversations = [], []
        for film in range(20):
            ids = []
            for question, answer in DIALOGUES.items():
                for text in (question, answer):
                    ids.append(f"L{len(lines)}")
                    lines.append(f"{ids[-1]} +++$+++ u0 +++$+++ m{film} +++$+++ ANNA +++$+++ {text}")
            conversations.append(f"u0 +++$+++ u1 +++$+++ m{film} +++$+++ {ids!r}")
        (sample / "movie_lines.txt").write_text("\n".join(lines) + "\n", encoding="iso-8859-1")
        (sample / "movie_conversations.txt").write_text("\n".join(conversations) + "\n", encoding="iso-8859-1")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("movie_lines.txt", "movie_conversations.txt"):
            archive.write(sample / name, f"cornell movie-dialogs corpus/{name}")
    buffer.seek(0)
    buffer.name = "cornell.zip"
    return buffer, sample


def test_a_cornell_zip_is_validated_and_trained_on(celery_worker, api, tmp_path):
    from worker.pipelines.chatbot import data

    archive, folder = cornell_zip(tmp_path)
    dataset = api.post("/api/v1/datasets/", {"name": "cornell", "kind": "cornell", "file": archive}, format="multipart")
    assert dataset.status_code == 201, dataset.json()
    ready = wait_for(
        lambda: (body := api.get(f"/api/v1/datasets/{dataset.json()['id']}/").json())["status"] != "validating" and body,
        timeout=180, message="the dataset's validation",
    )
    assert ready["status"] == "ready", ready["error"]
    assert ready["stats"] == data.inspect_cornell(folder) and ready["stats"]["pairs"] > 0

    params = {**PARAMS, "epochs": 1, "max_pairs": 400}
    run = api.post("/api/v1/runs/", {"pipeline": "chatbot", "params": params, "dataset": ready["id"]}, format="json")
    assert run.status_code == 201, run.json()
    finished = wait_for(
        lambda: (body := api.get(f"/api/v1/runs/{run.json()['id']}/").json())["status"] in ("succeeded", "failed") and body,
        timeout=600, message="the Cornell run",
    )
    assert finished["status"] == "succeeded", finished["error"]
    assert finished["summary"]["train_pairs"] > 0


def test_train_predict_and_chat(celery_worker, api, other_api, user):
    dataset = api.post("/api/v1/datasets/", {"name": "greetings", "kind": "dialogue_pairs", "file": dialogue_zip()}, format="multipart")
    assert dataset.status_code == 201, dataset.json()
    dataset_id = dataset.json()["id"]
    ready = wait_for(
        lambda: (body := api.get(f"/api/v1/datasets/{dataset_id}/").json())["status"] != "validating" and body,
        timeout=180, message="the dataset's validation",
    )
    assert ready["status"] == "ready", ready["error"]
    assert ready["stats"]["pairs"] == 200

    run = api.post("/api/v1/runs/", {"pipeline": "chatbot", "params": PARAMS, "dataset": dataset_id}, format="json")
    assert run.status_code == 201, run.json()
    run_id = run.json()["id"]
    finished = wait_for(
        lambda: (row := Run.objects.get(pk=run_id)).status in (RunStatus.SUCCEEDED, RunStatus.FAILED) and row,
        timeout=600, interval=0.5, message="the chatbot run",
    )
    assert finished.status == RunStatus.SUCCEEDED, finished.error + finished.traceback
    metrics = api.get(f"/api/v1/runs/{run_id}/metrics/").json()
    for key in ("loss", "perplexity", "val_perplexity"):
        assert [point["step"] for point in metrics[key]] == list(range(1, PARAMS["epochs"] + 1))
    assert metrics["perplexity"][-1]["value"] < 2.0
    artifacts = {artifact["name"]: artifact for artifact in api.get(f"/api/v1/runs/{run_id}/artifacts/").json()}
    assert {"model.zip", "sample_replies.json", "dataset_stats.json"} <= set(artifacts)
    samples = api.get(artifacts["sample_replies.json"]["download_url"])
    held_out = {sample["in"] for sample in json.loads(b"".join(samples.streaming_content)) if "expected" in sample}
    assert len(held_out) == 1  # one of the ten distinct pairs; the model learns the other nine
    learnt = [question for question in DIALOGUES if question not in held_out]
    model_id = api.get(f"/api/v1/runs/{run_id}/").json()["model_version"]["id"]

    # REST, the book's shape.
    predicted = api.post(f"/api/v1/models/{model_id}/predict/", {"sentence": learnt[0].upper()}, format="json")
    assert predicted.status_code == 200, predicted.content
    assert predicted.json() == {"in": learnt[0].upper(), "out": DIALOGUES[learnt[0]]}
    refused = api.post(f"/api/v1/models/{model_id}/predict/", {"text": "Hello"}, format="json")
    assert refused.status_code == 400
    assert refused.json()["message"] == "sentence: required, a non-empty string"

    # The websocket: tokens as decoded, then the whole reply; errors keep the socket open.
    token = api.token
    prompts = learnt[:2]

    async def chat():
        communicator = WebsocketCommunicator(application, f"/ws/chat/{model_id}/?token={token}")
        assert await communicator.connect(timeout=TIMEOUT) == (True, None)
        turns = []
        for message in prompts:
            await communicator.send_json_to({"message": message})
            received = []
            while not received or received[-1]["type"] == "token":
                received.append(await communicator.receive_json_from(timeout=TIMEOUT))
            turns.append(received)
            if message == prompts[0]:
                await communicator.send_json_to({"message": ""})
                turns.append([await communicator.receive_json_from(timeout=TIMEOUT)])
        await communicator.disconnect()
        return turns

    first, error, second = async_to_sync(chat)()
    for turn, prompt in ((first, prompts[0]), (second, prompts[1])):
        reply = DIALOGUES[prompt]
        tokens = [message for message in turn if message["type"] == "token"]
        assert len(tokens) >= 3  # streamed word by word, not in one piece
        assert turn[-1] == {"type": "reply", "text": reply}
        assert "".join(message["text"] for message in tokens) == reply
    assert error == [{"type": "error", "message": 'message: required, a non-empty string, as in {"message": "hello"}.'}]

    session = ChatSession.objects.get(owner=user)
    assert [(m.role, m.text) for m in session.messages.all()] == [
        ("user", prompts[0]), ("bot", DIALOGUES[prompts[0]]), ("user", prompts[1]), ("bot", DIALOGUES[prompts[1]]),
    ]
    assert all(m.latency_ms > 0 for m in session.messages.filter(role=ChatMessage.Role.BOT))

    # Bob may not use alice's private model.
    bob_token = other_api.token

    async def bob():
        communicator = WebsocketCommunicator(application, f"/ws/chat/{model_id}/?token={bob_token}")
        return await communicator.connect(timeout=TIMEOUT)

    assert async_to_sync(bob)() == (False, CLOSE_NOT_FOUND)
    assert other_api.post(f"/api/v1/models/{model_id}/predict/", {"sentence": "hi"}, format="json").status_code == 404
