"""`/ws/runs/<id>/`: a snapshot of the run on connect, then its live events. Owner only."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import Http404

from apps.experiments import selectors
from apps.experiments.events import run_group_name

CLOSE_UNAUTHORISED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_BAD_ORIGIN = 4403


class RunConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHORISED)
            return
        # Only a signed-in cookie session is a session: a client with no credentials is unauthorised
        # wherever it comes from.
        if self.scope.get("auth_method") == "session" and not self.scope.get("origin_allowed"):
            await self.close(code=CLOSE_BAD_ORIGIN)
            return
        run_id = int(self.scope["url_route"]["kwargs"]["run_id"])
        try:
            await database_sync_to_async(selectors.run_get_for_user)(user=user, run_id=run_id)
        except Http404:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.group = run_group_name(run_id)
        # Join before reading the snapshot, so nothing falls between them; events the snapshot already
        # holds are dropped by their seq.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        run = await database_sync_to_async(selectors.run_get_for_user)(user=user, run_id=run_id)
        snapshot = await database_sync_to_async(selectors.run_snapshot)(run=run)
        self.last_seq = snapshot["seq"]
        await self.send_json(snapshot)
        if run.is_finished:
            await self.send_json({"type": "status", "status": run.status, "seq": self.last_seq, "final": True})

    async def disconnect(self, code):
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        if content.get("type") == "resync":
            run = await database_sync_to_async(selectors.run_get_for_user)(
                user=self.scope["user"], run_id=int(self.scope["url_route"]["kwargs"]["run_id"])
            )
            snapshot = await database_sync_to_async(selectors.run_snapshot)(run=run)
            self.last_seq = snapshot["seq"]
            await self.send_json(snapshot)

    async def run_event(self, message):
        event = message["event"]
        if event.get("seq", 0) <= self.last_seq:
            return
        self.last_seq = event["seq"]
        await self.send_json(event)
