from rest_framework import serializers

from apps.datasets.models import Dataset


class DatasetSerializer(serializers.ModelSerializer):
    slug = serializers.CharField(read_only=True)

    class Meta:
        model = Dataset
        fields = ["id", "slug", "name", "kind", "source", "bytes", "sha256", "stats", "status", "error", "created_at"]


class DatasetUploadSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField()
    file = serializers.FileField()
