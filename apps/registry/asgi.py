"""The fast lane for a service's predictions: the same DRF view, without Django's ASGI request cycle.

Under ASGI, Django serves each request with a new thread and runs every middleware hook and both
request signals in it through `sync_to_async`. Measured here, that is about 4 ms of CPU per prediction
request, ten times the 0.4 ms the predict view itself takes. A service that predicts hundreds of
times a second needs none of it: its API token is its only credential (no session, cookie, CSRF token
or flash messages), and while it keeps calling, its token and the model it uses are in this process's
memory (`CachedTokenAuthentication`, `selectors.model_version_get_usable_cached`).

So a POST to the predict endpoint whose token and model are both remembered, for a model answered
within the request, is served here: Django builds the request, the stateless middleware (security
headers, Content-Length, X-Frame-Options) runs inline, and the view is called directly with what was
remembered (`request.remembered_access`, as middleware sets `request.user`). Nothing on this path
touches the database, which is why it can do without the request signals that manage connections.
Every other request, a service's first prediction included, goes through Django, which is also how
the memory is filled.
"""

from __future__ import annotations

from typing import NamedTuple

from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import Resolver404, ResolverMatch, resolve

from apps.accounts.authentication import CachedTokenAuthentication
from apps.registry import selectors
from apps.registry.models import ModelVersion
from worker.pipelines.base import get_pipeline

PREDICT_URL_NAME = "model-predict"
STATELESS_MIDDLEWARE = (SecurityMiddleware, CommonMiddleware, XFrameOptionsMiddleware)


class RememberedAccess(NamedTuple):
    user: object
    token: object
    model: ModelVersion


class PredictionLane(ASGIHandler):
    """ASGI: remembered services' predictions served directly; everything else passed on to `app`."""

    def __init__(self, app):
        self.app = app
        super().__init__()

    def load_middleware(self, is_async=False):
        self.middleware = [middleware_class(self._not_called) for middleware_class in STATELESS_MIDDLEWARE]
        self._respond = convert_exception_to_response(self._get_response)  # uncaught errors: Django's 500

    async def __call__(self, scope, receive, send):
        match = self._predict_match(scope)
        if match is None:
            return await self.app(scope, receive, send)
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        remembered = self._remembered(scope, match)
        if remembered is None:
            body = body_file.read()
            body_file.close()
            return await self.app(scope, _replay(body, receive), send)
        request, error_response = self.create_request(scope, body_file)
        if request is not None:
            request.resolver_match, request.remembered_access = match, remembered
        response = error_response or await self._respond(request)
        await self.send_response(response, send)
        body_file.close()

    @staticmethod
    def _predict_match(scope) -> ResolverMatch | None:
        """The predict view's URL match for a POST with an API token, else None."""
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith("/predict/"):
            return None
        if CachedTokenAuthentication.token_key(_authorization(scope)) is None:
            return None
        try:
            match = resolve(scope["path"].removeprefix(get_script_prefix(scope)))
        except Resolver404:
            return None
        return match if match.url_name == PREDICT_URL_NAME else None

    @staticmethod
    def _remembered(scope, match: ResolverMatch) -> RememberedAccess | None:
        """The token's user and the model, if both are in memory and the model answers within the request."""
        key = CachedTokenAuthentication.token_key(_authorization(scope))
        credentials = CachedTokenAuthentication.credentials_for(key)
        model = selectors.model_version_get_usable_cached(token=key, reference=match.kwargs["reference"])
        if credentials is None or model is None or get_pipeline(model.pipeline).predict_mode != "sync":
            return None
        return RememberedAccess(*credentials, model)

    async def _get_response(self, request):
        for middleware in self.middleware:
            response = getattr(middleware, "process_request", lambda request: None)(request)
            if response is not None:
                break
        else:
            match = request.resolver_match
            response = await match.func(request, *match.args, **match.kwargs)
            if hasattr(response, "render"):
                response.render()  # DRF's JSON: no I/O
        for middleware in reversed(self.middleware):
            response = middleware.process_response(request, response)
        return response

    @staticmethod
    def _not_called(request):
        raise AssertionError("the lane calls the view itself")


def _authorization(scope) -> bytes:
    return dict(scope["headers"]).get(b"authorization", b"")


def _replay(body: bytes, receive):
    """An ASGI `receive` that hands Django the body the lane already read, then listens on."""
    replayed = False

    async def receive_again():
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again
