from django.contrib import admin

from apps.registry.models import ModelAlias, ModelVersion, Prediction


class ModelAliasInline(admin.TabularInline):
    model = ModelAlias
    extra = 0
    fields = ["alias"]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "owner", "pipeline", "source", "visibility", "created_at"]
    list_filter = ["pipeline", "visibility", "source"]
    search_fields = ["name", "owner__username"]
    filter_horizontal = ["shared_with"]
    inlines = [ModelAliasInline]

    def save_formset(self, request, form, formset, change):
        for alias in formset.save(commit=False):
            alias.owner, alias.name = alias.model_version.owner, alias.model_version.name
            alias.save()
        for alias in formset.deleted_objects:
            alias.delete()


@admin.register(ModelAlias)
class ModelAliasAdmin(admin.ModelAdmin):
    list_display = ["name", "alias", "owner", "model_version"]
    search_fields = ["name", "alias", "owner__username"]


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ["id", "model_version", "owner", "status", "latency_ms", "created_at"]
    list_filter = ["status"]
