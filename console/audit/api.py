from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

from console import perms
from console.api import paginated, valid
from console.permissions import MethodPermissions
from console.schema import paged

from .models import AuditEvent
from .selectors import audit_event_list


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_name")

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor",
            "verb",
            "object_type",
            "object_id",
            "object_repr",
            "before",
            "after",
            "request_id",
        ]


class AuditFilterSerializer(serializers.Serializer):
    object_type = serializers.CharField(
        required=False, default="", max_length=64, help_text="e.g. registry.registeredmodel"
    )
    object_id = serializers.CharField(required=False, default="", max_length=64)
    actor = serializers.CharField(required=False, default="", max_length=150)
    verb = serializers.CharField(
        required=False, default="", max_length=64, help_text="An exact verb, or a prefix ending in '.' such as 'model.'"
    )
    since = serializers.DateTimeField(required=False, default=None)
    until = serializers.DateTimeField(required=False, default=None)


class AuditEventListView(APIView):
    permission_classes = [MethodPermissions]
    permissions_by_method = {"GET": perms.VIEW_AUDIT}
    ordering = ("-created_at", "-id")

    @extend_schema(parameters=[AuditFilterSerializer], operation_id="audit_list", responses=paged(AuditEventSerializer))
    def get(self, request):
        return paginated(
            self, audit_event_list(**valid(AuditFilterSerializer, request.query_params)), AuditEventSerializer
        )
