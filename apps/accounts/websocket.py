"""Websocket authentication: an API token (`?token=`, for services) or the browser's session cookie.

Origin is checked for cookie sessions only: a cross-site page can make the browser send the cookie,
but it cannot know a token.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.request import validate_host
from rest_framework.authtoken.models import Token


@database_sync_to_async
def _user_for_token(key: str):
    token = Token.objects.select_related("user").filter(key=key).first()
    return token.user if token and token.user.is_active else AnonymousUser()


def origin_allowed(headers: list[tuple[bytes, bytes]]) -> bool:
    origin = urlparse(dict(headers).get(b"origin", b"").decode("latin1"))
    if origin.scheme not in ("http", "https") or not origin.hostname:
        return False
    host = f"[{origin.hostname}]" if ":" in origin.hostname else origin.hostname
    return validate_host(host, settings.ALLOWED_HOSTS)


class TokenOrSessionAuthMiddleware:
    def __init__(self, inner):
        self.inner = inner
        self.session_stack = AuthMiddlewareStack(inner)

    async def __call__(self, scope, receive, send):
        token = parse_qs(scope.get("query_string", b"").decode()).get("token", [None])[0]
        if token:
            scope = dict(scope, user=await _user_for_token(token), auth_method="token")
            return await self.inner(scope, receive, send)
        scope = dict(scope, auth_method="session", origin_allowed=origin_allowed(scope.get("headers", [])))
        return await self.session_stack(scope, receive, send)
