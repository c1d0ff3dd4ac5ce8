"""Health and API tokens."""

from __future__ import annotations

from datetime import timedelta

import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.experiments.models import WorkerHeartbeat
from apps.experiments.selectors import queue_depths


class HealthApi(APIView):
    """200 whenever the web process serves; the body says what is up."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(summary="Health of the database, Redis, the workers and the queues (messages waiting)", responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response(
            {"database": _database(), "redis": _redis(), "workers": _workers(), "queues": queue_depths()}
        )


def _database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True, "vendor": connection.vendor}
    except Exception as error:  # health reports problems, it does not raise them
        return {"ok": False, "error": str(error)}


def _redis() -> dict:
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
        client.ping()
        return {"ok": True}
    except Exception as error:
        return {"ok": False, "error": str(error)}


def _workers() -> list[dict]:
    try:
        alive_since = timezone.now() - timedelta(seconds=settings.WORKER_ALIVE_WITHIN)
        return [
            {"hostname": worker.hostname, "queues": worker.queues, "last_seen": worker.last_seen.isoformat()}
            for worker in WorkerHeartbeat.objects.filter(last_seen__gte=alive_since).order_by("hostname")
        ]
    except Exception:
        return []


class TokenApi(ObtainAuthToken):
    """POST {"username", "password"} -> {"token"}."""

    permission_classes = [AllowAny]
