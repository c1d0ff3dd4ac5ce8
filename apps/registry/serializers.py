from rest_framework import serializers

from apps.registry.models import ModelVersion, Prediction


class ModelVersionSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username")
    aliases = serializers.SerializerMethodField()
    shared_with = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id", "owner", "name", "version", "pipeline", "source", "run", "aliases", "visibility",
            "shared_with", "metrics", "sha256", "created_at",
        ]

    def get_aliases(self, model) -> list[str]:
        return sorted(alias.alias for alias in model.aliases.all())

    def get_shared_with(self, model) -> list[str]:
        request = self.context.get("request")
        if request is not None and request.user.pk != model.owner_id:
            return []  # who else it is shared with is the owner's business
        return sorted(user.username for user in model.shared_with.all())


class ModelVersionUpdateSerializer(serializers.Serializer):
    aliases = serializers.ListField(child=serializers.CharField(), required=False)
    visibility = serializers.ChoiceField(choices=ModelVersion.Visibility.choices, required=False)
    shared_with = serializers.ListField(child=serializers.CharField(), required=False)


class PredictionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Prediction
        fields = ["id", "model_version", "status", "outputs", "error", "latency_ms", "created_at", "finished_at"]
