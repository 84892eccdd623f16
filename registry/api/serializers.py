"""Shapes of the registry API. Type checks only: the rules live in registry.services."""

from functools import lru_cache
from urllib.parse import quote, unquote

from django.urls import get_script_prefix, reverse
from django.utils.http import RFC3986_SUBDELIMS
from rest_framework import serializers

from registry.models import ModelVersion, RegisteredModel


class RegisteredModelSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = RegisteredModel
        fields = [
            "name",
            "description",
            "tags",
            "aliases",
            "latest_version",
            "version_count",
            "created_at",
            "updated_at",
            "url",
        ]

    def get_url(self, obj) -> str:
        return reverse("api:model-detail", kwargs={"name": obj.name})


class ModelCreateSerializer(serializers.Serializer):
    name = serializers.CharField(trim_whitespace=False, max_length=1000)
    description = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)
    tags = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False, default=dict)


class TagsPatchField(serializers.DictField):
    child = serializers.CharField(allow_blank=True, allow_null=True)


class UpdateSerializer(serializers.Serializer):
    description = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    tags = TagsPatchField(required=False, help_text="Tags to set; a null value removes that tag.")


class ModelVersionSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name")
    model_uri = serializers.CharField(read_only=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "model",
            "version",
            "model_uri",
            "description",
            "tags",
            "aliases",
            "source",
            "run_id",
            "status",
            "status_message",
            "creator",
            "created_at",
            "updated_at",
            "flavors",
            "signature",
            "servable",
            "serving_note",
            "keras_archive_path",
            "conversion_state",
            "conversion_detail",
            "url",
        ]

    def get_url(self, obj) -> str:
        return version_url(obj.model.name, obj.version)


def version_url(name: str, version: int, models_path: str | None = None) -> str:
    """What reverse("api:version-detail") returns, built without resolving the URLconf for every
    row: that was a tenth of a 50-row search page's time (bench/). A list passes
    ``models_path()`` once for all its rows."""
    if "/" in name:  # reverse() refuses it; let it say so
        return reverse("api:version-detail", kwargs={"name": name, "version": version})
    base = models_path if models_path is not None else models_list_path()
    return quote(f"{base}{name}/versions/{version}/", safe=RFC3986_SUBDELIMS + "/~:@")


def models_list_path() -> str:
    """The unquoted path of the model list under this request's script prefix."""
    return _models_path(get_script_prefix())


@lru_cache(maxsize=8)
def _models_path(script_prefix: str) -> str:
    """The unquoted path of the model list; reverse() puts ``script_prefix`` in front."""
    return unquote(reverse("api:model-list"))


class VersionRegisterSerializer(serializers.Serializer):
    # DRF's serializer metaclass takes declared fields off the class, so this field does not
    # replace Field.source (the attribute the stubs see).
    source = serializers.CharField(  # type: ignore[assignment]
        trim_whitespace=False,
        max_length=5000,
        help_text="models:/m-<id>, runs:/<run_id>/model, models:/<name>/<version>, or a URI under an allowed root.",
    )
    run_id = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False, max_length=64)
    description = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)
    tags = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False, default=dict)


class ModelFilterSerializer(serializers.Serializer):
    q = serializers.CharField(required=False, default="", max_length=200)
    tag = serializers.CharField(required=False, default="", max_length=300, help_text="key or key:value")
    alias = serializers.CharField(required=False, default="", max_length=255)
    servable = serializers.BooleanField(required=False, allow_null=True, default=None)


class VersionFilterSerializer(serializers.Serializer):
    model = serializers.CharField(required=False, default="", max_length=256)
    status = serializers.ChoiceField(choices=[c[0] for c in ModelVersion.STATUS_CHOICES], required=False, default="")
    run_id = serializers.CharField(required=False, default="", max_length=64)
    tag = serializers.CharField(required=False, default="", max_length=300, help_text="key or key:value")
    alias = serializers.CharField(required=False, default="", max_length=255)
    servable = serializers.BooleanField(required=False, allow_null=True, default=None)


class RunSerializer(serializers.Serializer):
    run_id = serializers.CharField()
    name = serializers.CharField()
    experiment_id = serializers.CharField()
    status = serializers.CharField()
    user = serializers.CharField()
    start_time = serializers.IntegerField(allow_null=True)
    end_time = serializers.IntegerField(allow_null=True)
    metrics = serializers.DictField(child=serializers.FloatField())
    params = serializers.DictField(child=serializers.CharField())
