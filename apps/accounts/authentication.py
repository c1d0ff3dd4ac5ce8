"""API token authentication that remembers tokens it has checked for ACCESS_CACHE_SECONDS.

For endpoints called many times a second by the same service (predictions): a request whose token was
seen recently is authenticated without the database. A deleted token or a deactivated user therefore
keeps working on this process for at most that long.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.authentication import TokenAuthentication, get_authorization_header

from dlsite.caching import TimedCache

_checked_tokens = TimedCache(seconds=settings.ACCESS_CACHE_SECONDS)


class CachedTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        user_and_token = _checked_tokens.get(key)
        if user_and_token is None:
            user_and_token = super().authenticate_credentials(key)  # raises for a bad token: not cached
            _checked_tokens.set(key, user_and_token)
        return user_and_token

    @classmethod
    def token_key(cls, authorization: bytes) -> str | None:
        """The key in an `Authorization: Token <key>` header's value, else None."""
        words = authorization.split()
        if len(words) != 2 or words[0].lower() != cls.keyword.lower().encode():
            return None
        return words[1].decode(errors="replace")

    @classmethod
    def cached_credentials(cls, request) -> tuple | None:
        """(user, token) of the request's API token if this process checked it recently, else None."""
        return cls.credentials_for(cls.token_key(get_authorization_header(request)))

    @staticmethod
    def credentials_for(key: str | None) -> tuple | None:
        """(user, token) of the token with this key if this process checked it recently, else None."""
        return _checked_tokens.get(key) if key else None
