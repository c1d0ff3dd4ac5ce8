"""Predictions on a worker: predictors loaded once per process, kept in an LRU cache.

Fast predictions wait on one Redis list (apps/registry/inference.py); a `predict` task serves it in
batches until it has been idle for PREDICT_LINGER seconds, and pushes each reply onto the inbox of the
web process waiting for it, prefixed with the request's key. Slow ones are Prediction rows, answered
in the row.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import redis
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.utils import timezone

from apps.registry.inference import (
    LEASE_SECONDS, LEASE_SUFFIX, model_reference, prediction_file_url, prediction_output_path, send_predict_task,
)
from apps.registry.models import Prediction
from worker.pipelines.base import PredictInput, Predictor, get_pipeline
from worker.runtime.storage import download_folder_zip

logger = logging.getLogger(__name__)

REPLY_TTL_SECONDS = 60
# A task busy for this long hands over to a new one (queued behind whatever else waits for the worker),
# so serving a steady stream of predictions never holds a worker for good.
SERVE_SECONDS_PER_TASK = 60
# Ends the lease only if nothing is pending, atomically: a view pushing meanwhile either finds the lease
# (and its request is served by this loop) or takes it afresh (and sends a new task).
RELEASE_IF_IDLE = """
if redis.call('LLEN', KEYS[1]) == 0 then
    redis.call('DEL', KEYS[2])
    return 1
end
return 0
"""


class ReplyTo(NamedTuple):
    """Where a request's messages go: its web process's inbox, each message prefixed with its key."""

    inbox: str
    key: str

    @classmethod
    def of(cls, request: dict) -> ReplyTo:
        return cls(request["reply_to"], request["key"])


def model_key(model: dict) -> str:
    """What identifies a model version's archive: its hash, else its storage path."""
    return model["sha256"] or model["storage_path"]


class PredictorCache:
    """Predictors by model archive hash, least recently used evicted first."""

    def __init__(self, size: int):
        self.size = size
        self._predictors: OrderedDict[str, Predictor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model: dict) -> Predictor:
        key = model_key(model)
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


def serve_pending(pending_key: str) -> int:
    """Answer the predictions pending on `pending_key`, a batch at a time, until none has come for
    PREDICT_LINGER seconds; returns how many were answered.

    Streaming requests (the chat websocket) whose predictor can `open_stream` join that model's
    stream instead, and the loop steps every open stream once a round: each round pushes the tokens
    and replies of the last one and pops what came meanwhile, in one round trip to Redis, so a new
    request joins the replies being decoded at the next step.

    A task that finds nothing to do (another one served its request) ends at once. One that pops a
    full batch asks for another task (at most one a second), so that a second inference worker, if
    there is one, helps with the backlog. One that has served for SERVE_SECONDS_PER_TASK hands the
    lease over to a new task, once its streams are done.
    """
    client = redis_client()
    release_if_idle = client.register_script(RELEASE_IF_IDLE)
    lease_key = pending_key + LEASE_SUFFIX
    streams = Streams()
    answered, worked = 0, False
    replies: list[tuple[ReplyTo, str]] = []  # (to whom, JSON message): a round's tokens and replies
    idle_since = started = time.monotonic()
    while True:
        # Handing over: finish the replies being decoded, take nothing new (it waits for the next task).
        handing_over = worked and time.monotonic() - started > SERVE_SECONDS_PER_TASK
        room = 0 if handing_over else settings.PREDICT_BATCH_SIZE - streams.in_flight
        with client.pipeline(transaction=False) as pipe:
            _push_replies(pipe, replies)  # the last round's, with the next pop: one round trip
            if room > 0:
                pipe.lpop(pending_key, room)
            pipe.expire(lease_key, LEASE_SECONDS)  # still serving
            results = pipe.execute()
        requests = (results[-2] or []) if room > 0 else []
        replies = []
        if handing_over and not streams:
            send_predict_task(pending_key)  # the lease stays, for the next task
            return answered
        if len(requests) == settings.PREDICT_BATCH_SIZE and client.set(pending_key + ":helped", 1, nx=True, ex=1):
            send_predict_task(pending_key)
        if not requests and not streams:
            waited = time.monotonic() - idle_since
            if waited >= (settings.PREDICT_LINGER if answered else 0):
                if release_if_idle(keys=[pending_key, lease_key]):
                    return answered
                continue  # a request came in just now
            # Wake on the next request; at least once a second, to renew the lease.
            first = client.blpop([pending_key], timeout=max(0.01, min(1.0, settings.PREDICT_LINGER - waited)))
            if first is None:
                continue
            requests = [first[1], *(client.lpop(pending_key, settings.PREDICT_BATCH_SIZE - 1) or [])]
        replies = answer_batch(requests, streams)
        tokens, finished = streams.step()
        answered += len(replies) + len(finished)
        replies += tokens + finished  # a reply's tokens go before it
        idle_since, worked = time.monotonic(), True


def _push_replies(pipe: redis.client.Pipeline, replies: list[tuple[ReplyTo, str]]) -> None:
    by_inbox: dict[str, list[str]] = {}
    for reply_to, message in replies:
        by_inbox.setdefault(reply_to.inbox, []).append(reply_to.key + message)
    for inbox, messages in by_inbox.items():  # a list expires if its web process is gone
        pipe.rpush(inbox, *messages).expire(inbox, REPLY_TTL_SECONDS)


def answer_batch(payloads: list[bytes], streams: Streams | None = None) -> list[tuple[ReplyTo, str]]:
    """(to whom, JSON reply) for each request of a batch still awaited, one predictor call per
    model. Streaming requests join `streams` where their predictor can stream (answered only if
    refused); without `streams`, or where it cannot, they are answered whole like the others."""
    now = time.time()
    requests = [request for request in map(json.loads, payloads) if request["deadline"] > now]
    by_model: dict[str, list[dict]] = {}
    replies = []
    for request in requests:
        if request.get("stream") and streams is not None:
            refused = streams.add(request["model"], ReplyTo.of(request), _inputs(request))
            if refused is not None:
                replies.append((ReplyTo.of(request), refused))
            continue
        by_model.setdefault(json.dumps(request["model"], sort_keys=True), []).append(request)
    for group in by_model.values():
        replies.extend(zip(map(ReplyTo.of, group), predict_replies(group[0]["model"], [_inputs(request) for request in group])))
    return replies


def _inputs(request: dict) -> PredictInput:
    files = {name: base64.b64decode(content) for name, content in request["files"].items()}
    return PredictInput(files=files, data=request["data"])


@dataclass
class _Stream:
    model: dict
    stream: Any  # the predictor's open_stream()
    requests: set[ReplyTo] = field(default_factory=set)  # those not answered yet


class Streams:
    """The streams of predictions being decoded on this worker, one per model, stepped together once
    a serving round. A predictor's `open_stream()` gives an object with `add(key, inputs)` (ValueError
    for a bad input) and `step()` -> (the text each reply gained, the outputs of the replies that
    ended), both by the key given to `add` (a ReplyTo), called while it is not empty (`len`).

    A step gives a `{"token": text}` message for each reply that gained text, then the usual
    `{"status": 200, "body": ...}` for each that ended (apps/chat/streaming.py reads them)."""

    def __init__(self) -> None:
        self._open: dict[str, _Stream] = {}  # by model archive

    def __bool__(self) -> bool:
        return bool(self._open)

    @property
    def in_flight(self) -> int:
        return sum(len(open_stream.requests) for open_stream in self._open.values())

    def add(self, model: dict, reply_to: ReplyTo, inputs: PredictInput) -> str | None:
        """Join the model's stream; the JSON reply instead if the request is refused at once (a bad
        input is a 400) or cannot stream (its predictor answers it whole)."""
        name = model_key(model)
        try:
            if name not in self._open:
                predictor = predictor_cache().get(model)
                if not hasattr(predictor, "open_stream"):
                    return predict_replies(model, [inputs])[0]
                self._open[name] = _Stream(model, predictor.open_stream())
            self._open[name].stream.add(reply_to, inputs)
        except ValueError as error:
            return json.dumps({"status": 400, "message": str(error)})
        except Exception as error:
            return _failed(model, error)
        self._open[name].requests.add(reply_to)
        return None

    def step(self) -> tuple[list[tuple[ReplyTo, str]], list[tuple[ReplyTo, str]]]:
        """One step of every stream: ([(to whom, JSON token message)], [(to whom, JSON reply)] of the
        requests it finished)."""
        tokens, finished = [], []
        for name, open_stream in list(self._open.items()):
            try:
                pieces, outputs = open_stream.stream.step()
            except Exception as error:  # all its requests fail; the next request opens a new stream
                del self._open[name]
                finished.extend((reply_to, _failed(open_stream.model, error)) for reply_to in open_stream.requests)
                continue
            tokens.extend((key, json.dumps({"token": piece})) for key, piece in pieces.items())
            finished.extend((key, _ok(output)) for key, output in outputs.items())
            open_stream.requests.difference_update(outputs)
            if not open_stream.requests:
                del self._open[name]
        return tokens, finished


def predict_replies(model: dict, batch: list[PredictInput]) -> list[str]:
    """The JSON replies to a batch of inputs for one model, in order.

    A predictor with `predict_batch` answers the batch in one call. If it refuses the batch (one bad
    input spoils the call), each input is tried alone, so that only the bad one is answered 400.
    """
    try:
        predictor = predictor_cache().get(model)
        if len(batch) > 1 and hasattr(predictor, "predict_batch"):
            return [_ok(output) for output in predictor.predict_batch(batch)]
    except ValueError:
        pass
    except Exception as error:
        return [_failed(model, error)] * len(batch)
    return [json.dumps(predict_reply(model, inputs)) for inputs in batch]


def _ok(output) -> str:
    return json.dumps({"status": 200, "body": output})


def _failed(model: dict, error: Exception) -> str:
    logger.error("prediction with model %s failed", model.get("id"), exc_info=error)
    return json.dumps({"status": 500, "message": f"Prediction failed: {type(error).__name__}."})


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
    outputs = _store_output_files(prediction_id, reply["body"]) if ok else None
    Prediction.objects.filter(pk=prediction_id).update(
        status=Prediction.Status.SUCCEEDED if ok else Prediction.Status.FAILED,
        outputs=outputs, error="" if ok else reply["message"],
        latency_ms=(time.perf_counter() - started) * 1000, finished_at=timezone.now(),
    )


def _store_output_files(prediction_id: int, outputs):
    """Files a predictor wrote and named in outputs["files"] ({name: local path}) go to the storage;
    their download URLs replace the paths, and the local copies are removed."""
    files = outputs.get("files") if isinstance(outputs, dict) else None
    if not files:
        return outputs
    urls = {}
    for key, local in files.items():
        path = Path(local)
        name = f"{key}{path.suffix}"
        with path.open("rb") as handle:
            default_storage.save(prediction_output_path(prediction_id, name), File(handle))
        path.unlink()
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # the predictor's own temporary folder, once empty
        urls[key] = prediction_file_url(prediction_id, name)
    return {**outputs, "files": urls}
