"""ASGI entry point: Django for HTTP, Channels consumers for websockets."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dlsite.settings")
django_asgi_app = get_asgi_application()  # sets Django up before the consumers import models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import path  # noqa: E402

from apps.accounts.websocket import TokenOrSessionAuthMiddleware  # noqa: E402
from apps.chat.consumers import ChatConsumer  # noqa: E402
from apps.experiments.consumers import RunConsumer  # noqa: E402
from apps.registry.asgi import PredictionLane  # noqa: E402

websocket_urlpatterns = [
    path("ws/runs/<int:run_id>/", RunConsumer.as_asgi()),
    path("ws/chat/<int:model_version_id>/", ChatConsumer.as_asgi()),
]

application = ProtocolTypeRouter(
    {
        # uvicorn serves no files: the pages' CSS and JS and the local Swagger UI are served from here.
        # Predictions by services skip Django's per-request machinery (apps/registry/asgi.py).
        "http": PredictionLane(ASGIStaticFilesHandler(django_asgi_app)),
        "websocket": TokenOrSessionAuthMiddleware(URLRouter(websocket_urlpatterns)),
    }
)

# Everything imported so far (Django, DRF, the URL map, the apps) lives as long as the process. Frozen,
# it is left out of the garbage collector's full collections, which otherwise walk it in the middle of
# requests: with 100,000 runs, p99 of the runs list fell from 86-215 ms to 53-65 ms (docs/RESULTS.md).
gc.collect()
gc.freeze()
