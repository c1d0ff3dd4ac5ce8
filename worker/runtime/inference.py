"""Predictions on a worker: predictors loaded once per process, kept in an LRU cache.

Fast predictions arrive as a Redis key (the request's inputs) and are answered on a Redis list the web
view is waiting on; slow ones are Prediction rows, answered in the row.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections import OrderedDict
from functools import cache

import redis
from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone

from apps.registry.models import Prediction
from worker.pipelines.base import PredictInput, Predictor, get_pipeline
from worker.runtime.storage import download_folder_zip

logger = logging.getLogger(__name__)

REQUEST_KEY = "dlsite:predict:request:{}"
REPLY_KEY = "dlsite:predict:reply:{}"
REPLY_TTL_SECONDS = 60


class PredictorCache:
    """Predictors by model archive hash, least recently used evicted first."""

    def __init__(self, size: int):
        self.size = size
        self._predictors: OrderedDict[str, Predictor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model: dict) -> Predictor:
        key = model["sha256"] or model["storage_path"]
        with self._lock:
            predictor = self._predictors.get(key)
            if predictor is not None:
                self._predictors.move_to_end(key)
                return predictor
            folder = settings.WORK_DIR / "models" / key
            if not (folder / ".complete").exists():
                download_folder_zip(model["storage_path"], folder)
                (folder / ".complete").touch()
            predictor = get_pipeline(model["pipeline"]).load(folder)
            self._predictors[key] = predictor
            while len(self._predictors) > self.size:
                self._predictors.popitem(last=False)
            return predictor


@cache
def predictor_cache() -> PredictorCache:
    return PredictorCache(settings.PREDICTOR_CACHE_SIZE)


@cache
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def answer_request(key: str) -> None:
    """Answer one fast prediction request; its web view is waiting on the reply list."""
    client = redis_client()
    payload = client.getdel(REQUEST_KEY.format(key))
    if payload is None:
        return  # the view gave up (timeout) or another worker already answered
    request = json.loads(payload)
    files = {name: base64.b64decode(content) for name, content in request["files"].items()}
    reply = predict_reply(request["model"], PredictInput(files=files, data=request["data"]))
    reply_key = REPLY_KEY.format(key)
    client.pipeline().rpush(reply_key, json.dumps(reply)).expire(reply_key, REPLY_TTL_SECONDS).execute()


def predict_reply(model: dict, inputs: PredictInput) -> dict:
    """{"status": 200, "body": output} or an error the view turns into a 4xx/5xx."""
    try:
        output = predictor_cache().get(model).predict(inputs)
        json.dumps(output)  # fail here, with a clear message, rather than in the view
        return {"status": 200, "body": output}
    except ValueError as error:
        return {"status": 400, "message": str(error)}
    except Exception as error:
        logger.exception("prediction with model %s failed", model.get("id"))
        return {"status": 500, "message": f"Prediction failed: {type(error).__name__}."}


def prediction_execute(prediction_id: int) -> None:
    """Answer a slow prediction (a row) and record its outcome."""
    from apps.registry.inference import model_reference

    claimed = Prediction.objects.filter(pk=prediction_id, status=Prediction.Status.QUEUED).update(
        status=Prediction.Status.RUNNING
    )
    if not claimed:
        return
    prediction = Prediction.objects.select_related("model_version").get(pk=prediction_id)
    files = {}
    for name, path in prediction.inputs.get("files", {}).items():
        with default_storage.open(path, "rb") as handle:
            files[name] = handle.read()
    started = time.perf_counter()
    reply = predict_reply(model_reference(prediction.model_version), PredictInput(files=files, data=prediction.inputs.get("data", {})))
    ok = reply["status"] == 200
    Prediction.objects.filter(pk=prediction_id).update(
        status=Prediction.Status.SUCCEEDED if ok else Prediction.Status.FAILED,
        outputs=reply.get("body"), error="" if ok else reply["message"],
        latency_ms=(time.perf_counter() - started) * 1000, finished_at=timezone.now(),
    )
