"""URL map: the REST API under /api/v1/, its schema and docs, the admin and the web pages."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.accounts.apis import HealthApi, TokenApi
from apps.datasets.apis import DatasetDetailApi, DatasetListApi
from apps.experiments.apis import (
    ArtifactDownloadApi,
    PipelineListApi,
    RunArtifactsApi,
    RunCancelApi,
    RunDetailApi,
    RunFinishApi,
    RunListApi,
    RunLogsApi,
    RunMetricsApi,
)
from apps.registry.apis import ModelDetailApi, ModelListApi, ModelPredictApi, PredictionDetailApi, PredictionFileApi

api_v1 = [
    path("health/", HealthApi.as_view(), name="health"),
    path("auth/token/", TokenApi.as_view(), name="auth-token"),
    path("pipelines/", PipelineListApi.as_view(), name="pipeline-list"),
    path("datasets/", DatasetListApi.as_view(), name="dataset-list"),
    path("datasets/<int:dataset_id>/", DatasetDetailApi.as_view(), name="dataset-detail"),
    path("runs/", RunListApi.as_view(), name="run-list"),
    path("runs/<int:run_id>/", RunDetailApi.as_view(), name="run-detail"),
    path("runs/<int:run_id>/cancel/", RunCancelApi.as_view(), name="run-cancel"),
    path("runs/<int:run_id>/finish/", RunFinishApi.as_view(), name="run-finish"),
    path("runs/<int:run_id>/metrics/", RunMetricsApi.as_view(), name="run-metrics"),
    path("runs/<int:run_id>/logs/", RunLogsApi.as_view(), name="run-logs"),
    path("runs/<int:run_id>/artifacts/", RunArtifactsApi.as_view(), name="run-artifacts"),
    path("artifacts/<int:artifact_id>/download/", ArtifactDownloadApi.as_view(), name="artifact-download"),
    path("models/", ModelListApi.as_view(), name="model-list"),
    path("models/<int:model_id>/", ModelDetailApi.as_view(), name="model-detail"),
    path("models/<str:reference>/predict/", ModelPredictApi.as_view(), name="model-predict"),
    path("predictions/<int:prediction_id>/", PredictionDetailApi.as_view(), name="prediction-detail"),
    path("predictions/<int:prediction_id>/files/<str:name>", PredictionFileApi.as_view(), name="prediction-file"),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("apps.web.urls")),
]
