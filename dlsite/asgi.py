"""ASGI entry point: Django for HTTP, Channels consumers for websockets."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dlsite.settings")
django_asgi_app = get_asgi_application()  # sets Django up before the consumers import models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import path  # noqa: E402

from apps.accounts.websocket import TokenOrSessionAuthMiddleware  # noqa: E402
from apps.experiments.consumers import RunConsumer  # noqa: E402
from apps.registry.asgi import PredictionLane  # noqa: E402

websocket_urlpatterns = [
    path("ws/runs/<int:run_id>/", RunConsumer.as_asgi()),
]

application = ProtocolTypeRouter(
    {
        # uvicorn serves no files: the pages' CSS and JS and the local Swagger UI are served from here.
        # Predictions by services skip Django's per-request machinery (apps/registry/asgi.py).
        "http": PredictionLane(ASGIStaticFilesHandler(django_asgi_app)),
        "websocket": TokenOrSessionAuthMiddleware(URLRouter(websocket_urlpatterns)),
    }
)
