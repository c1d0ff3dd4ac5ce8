"""A websocket test client for ASGI applications, like `channels.testing.WebsocketCommunicator`.

`channels.testing` imports Daphne (for its live-server test case) on import, and Daphne and Twisted
are no dependency of ours (we serve with uvicorn), so the few methods these tests need are here.
"""

from __future__ import annotations

import json
from unittest import mock
from urllib.parse import unquote, urlparse

from asgiref.testing import ApplicationCommunicator


def _keep_connections() -> None:
    """Channels closes old database connections around each message; in tests that would close the
    test's own connection (as channels' own communicator avoids)."""


class WebsocketCommunicator(ApplicationCommunicator):
    def __init__(self, application, path: str, headers: list[tuple[bytes, bytes]] | None = None):
        parsed = urlparse(path)
        scope = {
            "type": "websocket",
            "path": unquote(parsed.path),
            "query_string": parsed.query.encode(),
            "headers": headers or [],
            "subprotocols": [],
        }
        super().__init__(application, scope)

    async def send_input(self, message):
        with mock.patch("channels.db.close_old_connections", _keep_connections):
            return await super().send_input(message)

    async def receive_output(self, timeout=1):
        with mock.patch("channels.db.close_old_connections", _keep_connections):
            return await super().receive_output(timeout)

    async def connect(self, timeout: float = 1) -> tuple[bool, int | None]:
        """(True, None) when accepted; (False, close code) when refused."""
        await self.send_input({"type": "websocket.connect"})
        response = await self.receive_output(timeout)
        if response["type"] == "websocket.close":
            return False, response.get("code", 1000)
        assert response["type"] == "websocket.accept", response
        return True, None

    async def send_json_to(self, data) -> None:
        await self.send_input({"type": "websocket.receive", "text": json.dumps(data)})

    async def receive_json_from(self, timeout: float = 1):
        response = await self.receive_output(timeout)
        assert response["type"] == "websocket.send", response
        assert response.get("text") is not None, response
        return json.loads(response["text"])

    async def disconnect(self, code: int = 1000, timeout: float = 1) -> None:
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)
