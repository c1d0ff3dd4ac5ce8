"""REST views for pipelines, runs, metrics, logs and artifacts: validate, call, serialize."""

from __future__ import annotations

import mimetypes
import re

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from apps.accounts.errors import ApiError
from apps.experiments import selectors, services
from apps.experiments.serializers import (
    ArtifactSerializer,
    LogLineSerializer,
    MetricBatchSerializer,
    RunFinishSerializer,
    RunSerializer,
    RunSubmitSerializer,
)
from worker.pipelines.base import all_pipelines


class PipelineListApi(APIView):
    @extend_schema(summary="Pipelines with their parameter schemas and dataset kinds", responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response([
            {
                "name": pipeline.name,
                "title": pipeline.title,
                "description": pipeline.description,
                "params_schema": pipeline.params_schema(),
                "dataset_kinds": [
                    {"name": kind.name, "title": kind.title, "description": kind.description}
                    for kind in pipeline.dataset_kinds
                ],
                "builtin_datasets": [f"builtin:{dataset.name}" for dataset in pipeline.builtin_datasets],
                "default_dataset": f"builtin:{pipeline.default_dataset}" if pipeline.default_dataset else None,
                "predict_mode": pipeline.predict_mode,
            }
            for pipeline in all_pipelines()
        ])


RUN_FILTERS = ("pipeline", "status", "experiment", "order_by")


class RunListApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("pipeline", str), OpenApiParameter("status", str), OpenApiParameter("experiment", str),
            OpenApiParameter("order_by", str, description="created, -created, metric:<key>, -metric:<key>"),
            OpenApiParameter("limit", int, description="Runs per page (default 50)."),
            OpenApiParameter("cursor", str, description="From a `next` or `previous` link."),
            OpenApiParameter("offset", int, description="Instead of a cursor: skip this many runs (slow when deep)."),
        ],
        responses=inline_serializer("RunPage", {
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": RunSerializer(many=True),
        }),
    )
    def get(self, request):
        """Pages follow `next` and `previous` links (keyset cursors); there is no total count, which
        would cost a scan of all of a user's runs on every page."""
        query = request.query_params
        filters = {name: query[name] for name in RUN_FILTERS if query.get(name)}
        limit = _query_int(query, "limit", default=settings.REST_FRAMEWORK["PAGE_SIZE"], minimum=1,
                           maximum=settings.RUNS_PAGE_MAX_LIMIT)
        url = request.build_absolute_uri()
        if "offset" in query:
            if "cursor" in query:
                raise ApiError("Invalid query.", {"offset": ["Use a cursor or an offset, not both."]})
            offset = _query_int(query, "offset", default=0, minimum=0)
            runs = list(selectors.run_list(user=request.user, filters=filters)[offset : offset + limit + 1])
            next_url = replace_query_param(url, "offset", offset + limit) if len(runs) > limit else None
            previous_url = replace_query_param(url, "offset", max(offset - limit, 0)) if offset else None
            runs = runs[:limit]
        else:
            page = selectors.run_page(user=request.user, filters=filters, cursor=query.get("cursor"), limit=limit)
            runs = page.runs
            next_url = replace_query_param(url, "cursor", page.next_cursor) if page.next_cursor else None
            previous_url = replace_query_param(url, "cursor", page.previous_cursor) if page.previous_cursor else None
        return Response({"next": next_url, "previous": previous_url, "results": RunSerializer(runs, many=True).data})

    @extend_schema(request=RunSubmitSerializer, responses={201: RunSerializer})
    def post(self, request):
        payload = RunSubmitSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = dict(payload.validated_data)
        if data.pop("external"):
            run = services.run_create_external(
                user=request.user, pipeline=data["pipeline"], params=data["params"], experiment=data["experiment"]
            )
        else:
            run = services.run_submit(user=request.user, **data)
        return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED)


def _query_int(query, name: str, *, default: int, minimum: int, maximum: int | None = None) -> int:
    text = query.get(name)
    if text in (None, ""):
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        expected = f"from {minimum} to {maximum}" if maximum is not None else f"from {minimum}"
        raise ApiError("Invalid query.", {name: [f"Expected an integer {expected}."]})
    return value


class RunDetailApi(APIView):
    @extend_schema(responses=RunSerializer)
    def get(self, request, run_id: int):
        return Response(RunSerializer(selectors.run_get_for_user(user=request.user, run_id=run_id)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, run_id: int):
        services.run_delete(run=selectors.run_get_for_user(user=request.user, run_id=run_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class RunCancelApi(APIView):
    @extend_schema(request=None, responses=RunSerializer)
    def post(self, request, run_id: int):
        run = services.run_cancel(run=selectors.run_get_for_user(user=request.user, run_id=run_id))
        return Response(RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class RunMetricsApi(APIView):
    @extend_schema(summary="Metric history: {key: [{step, value, time}, ...]}", responses={200: OpenApiTypes.OBJECT})
    def get(self, request, run_id: int):
        run = selectors.run_get_for_user(user=request.user, run_id=run_id)
        return Response(selectors.run_metric_history(run=run))

    @extend_schema(
        summary="Log a batch of metric points to a running external run (like MLflow's log-batch)",
        request=MetricBatchSerializer,
        responses={200: inline_serializer("MetricBatchLogged", {"count": serializers.IntegerField()})},
    )
    def post(self, request, run_id: int):
        run = selectors.run_get_for_user(user=request.user, run_id=run_id)
        payload = MetricBatchSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        return Response({"count": services.metric_log_batch(run=run, **payload.validated_data["metrics"])})


class RunFinishApi(APIView):
    @extend_schema(summary="Finish a running external run", request=RunFinishSerializer, responses=RunSerializer)
    def post(self, request, run_id: int):
        run = selectors.run_get_for_user(user=request.user, run_id=run_id)
        payload = RunFinishSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        run = services.run_finish_external(run=run, **payload.validated_data)
        return Response(RunSerializer(run).data)


class RunLogsApi(APIView):
    @extend_schema(parameters=[OpenApiParameter("after", int)], responses=LogLineSerializer(many=True))
    def get(self, request, run_id: int):
        run = selectors.run_get_for_user(user=request.user, run_id=run_id)
        try:
            after = int(request.query_params.get("after") or 0)
        except ValueError:
            raise ApiError("Invalid query.", {"after": ["Expected the id of a log line (an integer)."]}) from None
        return Response(LogLineSerializer(selectors.run_log_lines(run=run, after_id=after), many=True).data)


class RunArtifactsApi(APIView):
    @extend_schema(responses=ArtifactSerializer(many=True))
    def get(self, request, run_id: int):
        run = selectors.run_get_for_user(user=request.user, run_id=run_id)
        return Response(ArtifactSerializer(selectors.run_artifacts(run=run), many=True, context={"request": request}).data)


RANGE_PATTERN = re.compile(r"^bytes=(\d*)-(\d*)$")
CHUNK_SIZE = 64 * 1024


class ArtifactDownloadApi(APIView):
    """The artifact's bytes, to its owner only, with single-range Range requests (resumable downloads)."""

    @extend_schema(responses={(200, "application/octet-stream"): bytes, (206, "application/octet-stream"): bytes})
    def get(self, request, artifact_id: int):
        artifact = selectors.artifact_get_for_user(user=request.user, artifact_id=artifact_id)
        return storage_file_response(request, storage_path=artifact.storage_path, name=artifact.name)


def storage_file_response(request, *, storage_path: str, name: str):
    """A stored file's bytes, whole or the single range the request asks for (videos seek with it)."""
    size = default_storage.size(storage_path)
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    byte_range = _parse_range(request.headers.get("Range", ""), size)
    if byte_range is None:
        response = FileResponse(default_storage.open(storage_path, "rb"), content_type=content_type)
        response["Accept-Ranges"] = "bytes"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
    if byte_range == "unsatisfiable":
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response
    start, end = byte_range
    response = StreamingHttpResponse(_read_range(storage_path, start, end), status=206, content_type=content_type)
    response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Content-Length"] = str(end - start + 1)
    response["Accept-Ranges"] = "bytes"
    return response


def _parse_range(header: str, size: int):
    match = RANGE_PATTERN.match(header.strip())
    if not match:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        start, end = max(size - int(last), 0), size - 1
    else:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        return "unsatisfiable"
    return start, end


def _read_range(path: str, start: int, end: int):
    with default_storage.open(path, "rb") as handle:
        handle.seek(start)
        remaining = end - start + 1
        while remaining > 0:
            chunk = handle.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
