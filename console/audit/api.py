from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.pagination import CursorPagination
from rest_framework.views import APIView

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


class NewestFirst(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class AuditEventListView(APIView):
    permission_classes = [MethodPermissions]
    permissions_by_method = {"GET": "audit.view_auditevent"}

    @extend_schema(parameters=[AuditFilterSerializer], operation_id="audit_list", responses=paged(AuditEventSerializer))
    def get(self, request):
        filters = AuditFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        paginator = NewestFirst()
        page = paginator.paginate_queryset(audit_event_list(**filters.validated_data), request, view=self)
        return paginator.get_paginated_response(AuditEventSerializer(page, many=True).data)
