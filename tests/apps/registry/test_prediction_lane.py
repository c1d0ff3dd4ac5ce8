"""The predict endpoint as the ASGI server calls it. A token's first prediction goes through Django and
leaves its token and model remembered; the following ones take the fast lane, with no Django request
cycle and no database, and answer the same, with the same status codes and headers. Whatever the lane
cannot serve goes through Django. The inference itself is stubbed: tests/worker/runtime/test_inference.py
covers the worker's side."""

from __future__ import annotations

import httpx
import pytest
from asgiref.sync import async_to_sync
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from apps.registry import inference, selectors
from apps.registry.asgi import PredictionLane
from apps.registry.models import ModelVersion
from dlsite.asgi import application
from tests.apps.factories import make_model_version

pytestmark = pytest.mark.django_db(transaction=True)  # Django and the lane read from other threads

PREDICTION = {"predictions": [{"class_id": 14, "label": "Stop", "probability": 0.75}]}


def post(app, path: str, *, token: str | None, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Token {token}"} if token else {}

    async def send():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
            return await client.post(path, headers=headers, **kwargs)

    return async_to_sync(send)()


@pytest.fixture
def replies(monkeypatch):
    """What the stubbed inference workers answer, and the models they were asked to run."""
    replies = {"next": {"status": 200, "body": PREDICTION}, "models": []}

    async def predict(*, model, files, data, timeout):
        replies["models"].append(model)
        return replies["next"]

    monkeypatch.setattr(inference, "predict", predict)
    return replies


@pytest.fixture
def lane():
    """The lane in front of a Django that records the requests it is passed."""
    passed = []

    async def django_app(scope, receive, send):
        passed.append(scope["path"])
        await application.application_mapping["http"].app(scope, receive, send)

    return PredictionLane(django_app), passed


@pytest.fixture
def database_reads(monkeypatch):
    """How often the predict path asked the database for a token or for a usable model."""
    counts = {"token": 0, "model": 0}
    check_token, get_usable = TokenAuthentication.authenticate_credentials, selectors.model_version_get_usable

    def counted_token(self, key):
        counts["token"] += 1
        return check_token(self, key)

    def counted_model(**kwargs):
        counts["model"] += 1
        return get_usable(**kwargs)

    monkeypatch.setattr(TokenAuthentication, "authenticate_credentials", counted_token)
    monkeypatch.setattr(selectors, "model_version_get_usable", counted_model)
    return counts


def test_a_token_predicting_again_takes_the_lane_and_reads_nothing(user, replies, lane, database_reads):
    app, passed = lane
    model = make_model_version(user)
    token = Token.objects.create(user=user).key
    path = f"/api/v1/models/{model.pk}/predict/"

    responses = [post(app, path, token=token, files={"file": ("sign.png", b"\x89PNG", "image/png")}) for _ in range(4)]

    assert [(response.status_code, response.json()) for response in responses] == [(200, PREDICTION)] * 4
    assert passed == [path]  # the first only
    assert database_reads == {"token": 1, "model": 1}
    assert replies["models"] == [inference.model_reference(model)] * 4
    through_django = post(application, path, token=None)  # for the headers Django's middleware sets
    headers = responses[-1].headers
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == str(len(responses[-1].content))
    for name in ("x-content-type-options", "x-frame-options", "referrer-policy", "cross-origin-opener-policy"):
        assert headers[name] == through_django.headers[name], name


@pytest.mark.parametrize(
    "reply",
    [{"status": 400, "message": "file: required"}, {"status": 500, "message": "Prediction failed: KeyError."}],
)
def test_refused_predictions_answer_as_through_django(user, replies, lane, reply):
    app, passed = lane
    model = make_model_version(user)
    token = Token.objects.create(user=user).key
    path = f"/api/v1/models/{model.pk}/predict/"
    post(app, path, token=token, json={})
    replies["next"] = reply

    fast = post(app, path, token=token, json={})
    through_django = post(application.application_mapping["http"].app, path, token=token, json={})

    assert (fast.status_code, fast.json()) == (reply["status"], {"message": reply["message"], "errors": {}})
    assert (through_django.status_code, through_django.json()) == (fast.status_code, fast.json())
    assert passed == [path]


def test_a_prediction_not_answered_in_time_is_504(user, replies, lane, monkeypatch):
    app, passed = lane
    model = make_model_version(user)
    token = Token.objects.create(user=user).key
    path = f"/api/v1/models/{model.pk}/predict/"
    post(app, path, token=token, json={})

    async def too_slow(**kwargs):
        raise inference.PredictTimeout

    monkeypatch.setattr(inference, "predict", too_slow)
    response = post(app, path, token=token, json={})
    assert response.status_code == 504 and response.json()["message"].startswith("No prediction within")
    assert passed == [path]


def test_what_the_lane_cannot_serve_goes_through_django(user, other_user, replies, lane, database_reads):
    app, passed = lane
    mine = make_model_version(user)
    theirs = make_model_version(other_user, name="private")
    public = make_model_version(other_user, name="public", visibility=ModelVersion.Visibility.PUBLIC)
    token = Token.objects.create(user=user).key
    assert post(app, f"/api/v1/models/{mine.pk}/predict/", token=token, json={}).status_code == 200
    passed.clear()

    assert post(app, f"/api/v1/models/{theirs.pk}/predict/", token=token, json={}).status_code == 404
    assert post(app, f"/api/v1/models/{theirs.pk}/predict/", token=token, json={}).status_code == 404
    assert database_reads["model"] == 3  # a refusal is not remembered
    assert post(app, f"/api/v1/models/{public.pk}/predict/", token=token, json={"x": 1}).json() == PREDICTION
    assert post(app, f"/api/v1/models/{mine.pk}/predict/", token="not-a-token", json={}).status_code == 401
    assert post(app, f"/api/v1/models/{mine.pk}/predict/", token=None, json={}).status_code == 401
    assert post(app, "/api/v1/runs/", token=token, json={}).status_code == 400  # not a prediction
    assert passed == [
        f"/api/v1/models/{theirs.pk}/predict/", f"/api/v1/models/{theirs.pk}/predict/",
        f"/api/v1/models/{public.pk}/predict/", f"/api/v1/models/{mine.pk}/predict/",
        f"/api/v1/models/{mine.pk}/predict/", "/api/v1/runs/",
    ]  # fmt: skip
    assert post(app, f"/api/v1/models/{public.pk}/predict/", token=token, json={}).status_code == 200
    assert len(passed) == 6  # now remembered


def test_a_request_replayed_to_django_keeps_its_upload(user, replies, lane, monkeypatch):
    app, passed = lane
    model = make_model_version(user)
    token = Token.objects.create(user=user).key
    uploads = []

    async def predict(*, model, files, data, timeout):
        uploads.append((files, data))
        return {"status": 200, "body": PREDICTION}

    monkeypatch.setattr(inference, "predict", predict)
    path = f"/api/v1/models/{model.pk}/predict/"
    response = post(app, path, token=token, files={"file": ("sign.png", b"\x89PNG-bytes", "image/png")}, data={"k": "v"})

    assert response.status_code == 200 and passed == [path]
    assert uploads == [({"file": b"\x89PNG-bytes"}, {"k": "v"})]
