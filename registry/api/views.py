"""REST API v1 for the registry. Views validate shapes and call services or selectors."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from console import perms
from console.api import paginated, paginated_rows, valid
from console.errors import NotFound, UpstreamUnavailable
from console.permissions import MethodPermissions
from console.schema import paged
from console.transactions import on_commit_safely
from registry import selectors, services
from registry.idempotency import Replay, idempotency_claim, idempotency_complete, idempotency_release
from registry.tasks import sync_registry_task

from . import rows
from .serializers import (
    ModelCreateSerializer,
    ModelFilterSerializer,
    ModelVersionSerializer,
    RegisteredModelSerializer,
    RunSerializer,
    UpdateSerializer,
    VersionFilterSerializer,
    VersionRegisterSerializer,
)


class RegistryView(APIView):
    permission_classes = [MethodPermissions]
    permissions_by_method: dict = {}


class ModelListView(RegistryView):
    permissions_by_method = {"GET": perms.VIEW_MODEL, "POST": perms.ADD_MODEL}
    ordering = ("name",)

    @extend_schema(
        parameters=[ModelFilterSerializer], operation_id="models_list", responses=paged(RegisteredModelSerializer)
    )
    def get(self, request):
        filters = valid(ModelFilterSerializer, request.query_params)
        return paginated(self, selectors.model_list(**filters), RegisteredModelSerializer)

    @extend_schema(request=ModelCreateSerializer, responses={201: RegisteredModelSerializer})
    def post(self, request):
        data = valid(ModelCreateSerializer, request.data)
        model = services.model_create(actor=request.user, **data)
        return Response(RegisteredModelSerializer(model).data, status=status.HTTP_201_CREATED)


class ModelDetailView(RegistryView):
    permissions_by_method = {"GET": perms.VIEW_MODEL, "PATCH": perms.CHANGE_MODEL}

    @extend_schema(responses=RegisteredModelSerializer)
    def get(self, request, name):
        return Response(RegisteredModelSerializer(selectors.model_get(name)).data)

    @extend_schema(request=UpdateSerializer, responses=RegisteredModelSerializer)
    def patch(self, request, name):
        data = valid(UpdateSerializer, request.data)
        model = services.model_update(actor=request.user, model=selectors.model_get(name), **data)
        return Response(RegisteredModelSerializer(model).data)


class ModelAliasesView(RegistryView):
    permissions_by_method = {"GET": perms.VIEW_MODEL}

    @extend_schema(
        responses=inline_serializer("Aliases", {"aliases": serializers.DictField(child=serializers.IntegerField())})
    )
    def get(self, request, name):
        return Response({"aliases": selectors.model_get(name).aliases})


class VersionListView(RegistryView):
    permissions_by_method = {"GET": perms.VIEW_VERSION, "POST": perms.ADD_VERSION}
    ordering = ("-version",)

    @extend_schema(operation_id="models_versions_list", responses=paged(ModelVersionSerializer))
    def get(self, request, name):
        versions = selectors.version_list(model=selectors.model_get(name))
        return paginated_rows(self, rows.version_values(versions), rows.version_rows)

    @extend_schema(
        request=VersionRegisterSerializer,
        responses={201: ModelVersionSerializer},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="Send the same key on a retry: the first result comes back and no second version is made.",
            )
        ],
    )
    def post(self, request, name):
        data = valid(VersionRegisterSerializer, request.data)
        key = request.headers.get("Idempotency-Key")
        claim = None
        if key is not None:
            claim = idempotency_claim(user=request.user, key=key, scope=f"register:{name}", body=request.data)
            if isinstance(claim, Replay):
                return Response(claim.body, status=claim.status, headers={"Idempotent-Replayed": "true"})
        try:
            version = services.version_register(actor=request.user, model_name=name, **data)
        except BaseException:
            if claim is not None:
                idempotency_release(claim)
            raise
        body = ModelVersionSerializer(version).data
        if claim is not None:
            idempotency_complete(claim, status=201, body=body)
        return Response(body, status=status.HTTP_201_CREATED)


class VersionDetailView(RegistryView):
    permissions_by_method = {"GET": perms.VIEW_VERSION, "PATCH": perms.CHANGE_VERSION}

    @extend_schema(responses=ModelVersionSerializer)
    def get(self, request, name, version):
        return Response(ModelVersionSerializer(selectors.version_get(name, version)).data)

    @extend_schema(request=UpdateSerializer, responses=ModelVersionSerializer)
    def patch(self, request, name, version):
        data = valid(UpdateSerializer, request.data)
        updated = services.version_update(actor=request.user, version=selectors.version_get(name, version), **data)
        return Response(ModelVersionSerializer(updated).data)


class VersionConvertView(RegistryView):
    permissions_by_method = {"POST": perms.CHANGE_VERSION}

    @extend_schema(request=None, responses={202: ModelVersionSerializer})
    def post(self, request, name, version):
        """Queue converting the version's Keras 3 archive to a SavedModel; 202 with the version."""
        queued = services.version_convert_request(actor=request.user, version=selectors.version_get(name, version))
        return Response(ModelVersionSerializer(queued).data, status=status.HTTP_202_ACCEPTED)


class VersionRunView(RegistryView):
    permissions_by_method = {"GET": perms.VIEW_VERSION}

    @extend_schema(responses=RunSerializer)
    def get(self, request, name, version):
        view = selectors.version_run(selectors.version_get(name, version))
        if view.unavailable:
            raise UpstreamUnavailable(view.error)
        if view.run is None:
            raise NotFound(view.error)
        return Response(RunSerializer(view.run).data)


class VersionSearchView(RegistryView):
    permissions_by_method = {"GET": perms.VIEW_VERSION}
    ordering = ("-created_at", "-id")

    @extend_schema(
        parameters=[VersionFilterSerializer], operation_id="versions_list", responses=paged(ModelVersionSerializer)
    )
    def get(self, request):
        filters = valid(VersionFilterSerializer, request.query_params)
        model_name = filters.pop("model")
        model = selectors.model_get(model_name) if model_name else None
        versions = selectors.version_list(model=model, **filters)
        return paginated_rows(self, rows.version_values(versions), rows.version_rows)


class SyncView(RegistryView):
    permissions_by_method = {"POST": perms.SYNC_REGISTRY}

    @extend_schema(request=None, responses={202: inline_serializer("SyncQueued", {"detail": serializers.CharField()})})
    def post(self, request):
        on_commit_safely(sync_registry_task.delay, what="Sync now")
        return Response({"detail": "Registry sync queued."}, status=status.HTTP_202_ACCEPTED)
