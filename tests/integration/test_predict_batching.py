"""Fast predictions through the real worker and a real traffic-sign model: requests pending together
are answered in one batch, each as it is answered alone; a bad image among them is answered 400 and
the others 200; concurrent requests through the API get the same answers as one at a time."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from apps.registry.inference import (
    KEY_LENGTH, LEASE_SUFFIX, PENDING_KEY, encode_request, model_reference, send_predict_task,
)
from apps.registry.models import ModelVersion
from tests.conftest import FIXTURES, token_client, wait_for
from tests.integration.test_worker import TINY, sign_png, upload, wait_for_status
from worker.runtime.inference import redis_client

pytestmark = [pytest.mark.worker, pytest.mark.tf, pytest.mark.django_db(transaction=True)]

IMAGES = [
    *(sorted((FIXTURES / "gtsrb_tiny" / folder).glob("*.ppm"))[0].read_bytes() for folder in ("00000", "00014", "00033")),
    sign_png(),
]


def assert_same_answer(answer: dict, alone: dict) -> None:
    """Same classes in the same order; probabilities equal up to float32 rounding between batch sizes."""
    assert [p["class_id"] for p in answer["predictions"]] == [p["class_id"] for p in alone["predictions"]]
    np.testing.assert_allclose(
        [p["probability"] for p in answer["predictions"]], [p["probability"] for p in alone["predictions"]], rtol=1e-4
    )


def test_batched_predictions_answer_as_single_ones(celery_worker, api, user):
    run = api.post("/api/v1/runs/", {"pipeline": "traffic_signs", "params": TINY}, format="json").json()
    assert wait_for_status(run["id"], {"succeeded", "failed"}, timeout=300).status == "succeeded"
    model = ModelVersion.objects.get(run_id=run["id"])
    predict_url = f"/api/v1/models/{model.pk}/predict/"

    def predict(client, content: bytes):
        return client.post(predict_url, {"file": upload(content, "sign.ppm")}, format="multipart")

    alone = []
    for content in IMAGES:
        response = predict(api, content)
        assert response.status_code == 200, response.content
        alone.append(response.json())

    # All pending at once (one RPUSH), as when they arrive while the worker computes: one batch.
    client = redis_client()
    wait_for(lambda: not client.exists(PENDING_KEY + LEASE_SUFFIX), timeout=30, message="the worker to go idle")
    contents = [*IMAGES, b"%PDF-1.4 not an image", *IMAGES]
    keys = [uuid.uuid4().hex for _ in contents]
    inbox = f"dlsite-test:inbox:{uuid.uuid4().hex}"
    client.rpush(PENDING_KEY, *(
        encode_request(
            key=key, reply_to=inbox, model=model_reference(model), files={"file": content}, data={},
            deadline=time.time() + 60,
        )
        for key, content in zip(keys, contents)
    ))  # fmt: skip
    assert client.set(PENDING_KEY + LEASE_SUFFIX, "test", nx=True, ex=10)
    send_predict_task()
    wait_for(lambda: client.llen(inbox) == len(keys), timeout=60, message="every reply in the inbox")
    by_key = {message[:KEY_LENGTH].decode(): json.loads(message[KEY_LENGTH:]) for message in client.lrange(inbox, 0, -1)}
    client.delete(inbox)
    replies = [by_key[key] for key in keys]

    assert replies[len(IMAGES)] == {"status": 400, "message": "file: not an image Pillow can read"}
    good = replies[: len(IMAGES)] + replies[len(IMAGES) + 1 :]
    assert [reply["status"] for reply in good] == [200] * len(good)
    for reply, single in zip(good, alone + alone):
        assert_same_answer(reply["body"], single)

    # Through the API, eight at a time: same answers; the bad image alone is refused.
    clients = [token_client(user) for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(predict, clients * 2, [*IMAGES, b"not an image", *IMAGES, *IMAGES[:3]]))  # 12
    statuses = [response.status_code for response in responses]
    assert statuses == [200] * 4 + [400] + [200] * 7, [response.content for response in responses]
    assert responses[4].json() == {"message": "file: not an image Pillow can read", "errors": {}}
    for response, single in zip(responses[:4] + responses[5:], alone + alone + alone[:3]):
        assert_same_answer(response.json(), single)
