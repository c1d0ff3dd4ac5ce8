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


# Close codes for a refused connection, as HTTP's 401, 403 and 404 in the 4000 range.
CLOSE_UNAUTHORISED = 4401
CLOSE_BAD_ORIGIN = 4403
CLOSE_NOT_FOUND = 4404


def refusal(scope) -> int | None:
    """The close code for a connection this middleware's scope does not allow (no signed-in user, or a
    cookie session from an origin not allowed); None when it may go on. Only a signed-in cookie session
    is a session: a client with no credentials is unauthorised wherever it comes from."""
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        return CLOSE_UNAUTHORISED
    if scope.get("auth_method") == "session" and not scope.get("origin_allowed"):
        return CLOSE_BAD_ORIGIN
    return None


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
