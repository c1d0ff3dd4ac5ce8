"""REST views for the model registry and predictions.

The predict view is async: it hands the request to an inference worker and awaits the reply without
holding a thread, so slow models never starve the web server. A service's repeated predictions are
served by apps/registry/asgi.py's fast lane, which calls the same view.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from adrf.views import APIView as AsyncAPIView
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authentication import CachedTokenAuthentication
from apps.accounts.errors import ApiError, error_body
from apps.experiments.apis import storage_file_response
from apps.registry import inference, selectors, services
from apps.registry.models import Prediction
from apps.registry.serializers import ModelVersionSerializer, ModelVersionUpdateSerializer, PredictionSerializer
from dlsite.jobs import enqueue
from worker.pipelines.base import PredictInput, get_pipeline


class ModelListApi(APIView):
    @extend_schema(responses=ModelVersionSerializer(many=True))
    def get(self, request):
        models = selectors.model_version_list(user=request.user)
        return Response(ModelVersionSerializer(models, many=True, context={"request": request}).data)


class ModelDetailApi(APIView):
    @extend_schema(responses=ModelVersionSerializer)
    def get(self, request, model_id: int):
        model = selectors.model_version_get_usable(user=request.user, reference=str(model_id))
        return Response(ModelVersionSerializer(model, context={"request": request}).data)

    @extend_schema(request=ModelVersionUpdateSerializer, responses=ModelVersionSerializer)
    def patch(self, request, model_id: int):
        model = selectors.model_version_get_owned(user=request.user, model_id=model_id)
        payload = ModelVersionUpdateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        model = services.model_version_update(model_version=model, **payload.validated_data)
        model = selectors.model_version_get_owned(user=request.user, model_id=model.pk)
        return Response(ModelVersionSerializer(model, context={"request": request}).data)


class ModelPredictApi(AsyncAPIView):
    """Predictions. A service may call this hundreds of times a second, so its usual request (an API
    token checked in the last few seconds, for a model it used in the last few seconds) never leaves
    the event loop: no thread, no database; only Redis, awaited. Such requests are also spared
    Django's request cycle: the fast lane (apps/registry/asgi.py) calls this view with the token's
    user and the model it found in memory, as `request.remembered_access`."""

    parser_classes = [MultiPartParser, FormParser, JSONParser]
    authentication_classes = [CachedTokenAuthentication, SessionAuthentication]

    async def async_dispatch(self, request, *args, **kwargs):
        # adrf runs `initial` (authentication, permissions, throttles) in a new thread for every
        # request; with the token's user at hand, it does no I/O and runs here.
        remembered = getattr(request, "remembered_access", None)
        if remembered is not None:
            credentials = remembered.user, remembered.token
        else:
            credentials = CachedTokenAuthentication.cached_credentials(request) if request.method == "POST" else None
        if credentials is None:
            return await super().async_dispatch(request, *args, **kwargs)
        self.args, self.kwargs = args, kwargs
        self.request = drf_request = self.initialize_request(request, *args, **kwargs)
        drf_request.user, drf_request.auth = credentials
        self.headers = self.default_response_headers
        try:
            self.initial(drf_request, *args, **kwargs)
            response = await self.post(drf_request, *args, **kwargs)
        except Exception as exc:
            response = self.handle_exception(exc)
        self.response = self.finalize_response(drf_request, response, *args, **kwargs)
        return self.response

    @extend_schema(
        summary="Predict with a model version (by id or name@alias)",
        request={"multipart/form-data": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}},
                 "application/json": {"type": "object"}},
        responses={
            200: OpenApiResponse(description="The predictor's JSON output, as it is."),
            202: PredictionSerializer,
            400: OpenApiResponse(description="The predictor refused the input."),
            504: OpenApiResponse(description="No answer within the prediction timeout."),
        },
    )
    async def post(self, request, reference: str):
        remembered = getattr(request, "remembered_access", None)
        if remembered is not None:
            model = remembered.model
        else:
            token = request.auth.key if request.auth is not None else None
            model = await selectors.model_version_get_usable_async(user=request.user, reference=reference, token=token)
        files, data = _read_inputs(request)
        if get_pipeline(model.pipeline).predict_mode_for(PredictInput(files=files, data=data)) == "async":
            prediction = await sync_to_async(_prediction_create)(model=model, user=request.user, files=files, data=data)
            body = PredictionSerializer(prediction).data
            body["url"] = f"/api/v1/predictions/{prediction.pk}/"
            return Response(body, status=status.HTTP_202_ACCEPTED)
        try:
            reply = await inference.predict(
                model=inference.model_reference(model), files=files, data=data, timeout=settings.PREDICT_TIMEOUT
            )
        except inference.PredictTimeout:
            return Response(
                error_body(f"No prediction within {settings.PREDICT_TIMEOUT:g} s; try again later."),
                status=status.HTTP_504_GATEWAY_TIMEOUT,
            )
        if reply["status"] != 200:
            return Response(error_body(reply["message"], reply.get("errors")), status=reply["status"])
        return Response(reply["body"])


def _read_inputs(request) -> tuple[dict[str, bytes], dict]:
    files: dict[str, bytes] = {}
    for name, upload in request.FILES.items():
        if upload.size > settings.PREDICT_MAX_UPLOAD_BYTES:
            raise ApiError("File too large.", {name: [f"{upload.size} bytes is over {settings.PREDICT_MAX_UPLOAD_BYTES}."]})
        files[name] = upload.read()
    data = {key: value for key, value in request.data.items() if key not in files}
    return files, data


def _prediction_create(*, model, user, files: dict[str, bytes], data: dict) -> Prediction:
    with transaction.atomic():
        prediction = Prediction.objects.create(model_version=model, owner=user, inputs={"data": data, "files": {}})
        prediction.inputs["files"] = {
            name: default_storage.save(f"predictions/{prediction.pk}/{name}", ContentFile(content))
            for name, content in files.items()
        }
        prediction.save(update_fields=["inputs"])
        enqueue("worker.tasks.prediction_execute", prediction.pk)
    return prediction


class PredictionDetailApi(APIView):
    @extend_schema(responses=PredictionSerializer)
    def get(self, request, prediction_id: int):
        prediction = selectors.prediction_get_for_user(user=request.user, prediction_id=prediction_id)
        return Response(PredictionSerializer(prediction).data)


class PredictionFileApi(APIView):
    """A file an async prediction produced (a rollout's video), to its owner, with Range requests."""

    @extend_schema(responses={(200, "application/octet-stream"): bytes, (206, "application/octet-stream"): bytes})
    def get(self, request, prediction_id: int, name: str):
        prediction = selectors.prediction_get_for_user(user=request.user, prediction_id=prediction_id)
        outputs = prediction.outputs if isinstance(prediction.outputs, dict) else {}
        storage_path = inference.prediction_output_path(prediction.pk, name)
        if inference.prediction_file_url(prediction.pk, name) not in outputs.get("files", {}).values():
            raise Http404
        if not default_storage.exists(storage_path):
            raise Http404
        return storage_file_response(request, storage_path=storage_path, name=name)
