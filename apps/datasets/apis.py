"""REST views for datasets: list, upload (validated on the `default` queue), show, delete."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.datasets import selectors, services
from apps.datasets.serializers import DatasetSerializer, DatasetUploadSerializer


class DatasetListApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(responses=DatasetSerializer(many=True))
    def get(self, request):
        return Response(DatasetSerializer(selectors.dataset_list(user=request.user), many=True).data)

    @extend_schema(request={"multipart/form-data": DatasetUploadSerializer}, responses={201: DatasetSerializer})
    def post(self, request):
        dataset = services.dataset_upload(
            owner=request.user,
            name=request.data.get("name", ""),
            kind=request.data.get("kind", ""),
            file=request.FILES.get("file"),
        )
        return Response(DatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)


class DatasetDetailApi(APIView):
    @extend_schema(responses=DatasetSerializer)
    def get(self, request, dataset_id: int):
        return Response(DatasetSerializer(selectors.dataset_get_for_user(user=request.user, dataset_id=dataset_id)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, dataset_id: int):
        services.dataset_delete(dataset=selectors.dataset_get_owned(user=request.user, dataset_id=dataset_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
