"""REST API v1 for the registry. Views validate shapes and call services or selectors."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from console.errors import NotFound, UpstreamUnavailable
from console.permissions import MethodPermissions
from console.schema import paged
from console.transactions import on_commit_safely
from registry import selectors, services
from registry.idempotency import Replay, idempotency_claim, idempotency_complete, idempotency_release
from registry.tasks import sync_registry_task

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

VIEW_MODEL, ADD_MODEL, CHANGE_MODEL = (
    "registry.view_registeredmodel",
    "registry.add_registeredmodel",
    "registry.change_registeredmodel",
)
VIEW_VERSION, ADD_VERSION, CHANGE_VERSION = (
    "registry.view_modelversion",
    "registry.add_modelversion",
    "registry.change_modelversion",
)


class ByName(CursorPagination):
    ordering: tuple[str, ...] = ("name",)
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class NewestVersionFirst(ByName):
    ordering = ("-version",)


class NewestFirst(ByName):
    ordering = ("-created_at", "-id")


def _valid(serializer_class, data):
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class RegistryView(APIView):
    permission_classes = [MethodPermissions]
    permissions_by_method: dict = {}

    def paginate(self, queryset, serializer_class, pagination_class):
        paginator = pagination_class()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response(serializer_class(page, many=True).data)


class ModelListView(RegistryView):
    permissions_by_method = {"GET": VIEW_MODEL, "POST": ADD_MODEL}

    @extend_schema(
        parameters=[ModelFilterSerializer], operation_id="models_list", responses=paged(RegisteredModelSerializer)
    )
    def get(self, request):
        filters = _valid(ModelFilterSerializer, request.query_params)
        return self.paginate(selectors.model_list(**filters), RegisteredModelSerializer, ByName)

    @extend_schema(request=ModelCreateSerializer, responses={201: RegisteredModelSerializer})
    def post(self, request):
        data = _valid(ModelCreateSerializer, request.data)
        model = services.model_create(actor=request.user, **data)
        return Response(RegisteredModelSerializer(model).data, status=status.HTTP_201_CREATED)


class ModelDetailView(RegistryView):
    permissions_by_method = {"GET": VIEW_MODEL, "PATCH": CHANGE_MODEL}

    @extend_schema(responses=RegisteredModelSerializer)
    def get(self, request, name):
        return Response(RegisteredModelSerializer(selectors.model_get(name)).data)

    @extend_schema(request=UpdateSerializer, responses=RegisteredModelSerializer)
    def patch(self, request, name):
        data = _valid(UpdateSerializer, request.data)
        model = services.model_update(actor=request.user, model=selectors.model_get(name), **data)
        return Response(RegisteredModelSerializer(model).data)


class ModelAliasesView(RegistryView):
    permissions_by_method = {"GET": VIEW_MODEL}

    @extend_schema(
        responses=inline_serializer("Aliases", {"aliases": serializers.DictField(child=serializers.IntegerField())})
    )
    def get(self, request, name):
        return Response({"aliases": selectors.model_get(name).aliases})


class VersionListView(RegistryView):
    permissions_by_method = {"GET": VIEW_VERSION, "POST": ADD_VERSION}

    @extend_schema(operation_id="models_versions_list", responses=paged(ModelVersionSerializer))
    def get(self, request, name):
        versions = selectors.version_list(model=selectors.model_get(name))
        return self.paginate(versions, ModelVersionSerializer, NewestVersionFirst)

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
        data = _valid(VersionRegisterSerializer, request.data)
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
    permissions_by_method = {"GET": VIEW_VERSION, "PATCH": CHANGE_VERSION}

    @extend_schema(responses=ModelVersionSerializer)
    def get(self, request, name, version):
        return Response(ModelVersionSerializer(selectors.version_get(name, version)).data)

    @extend_schema(request=UpdateSerializer, responses=ModelVersionSerializer)
    def patch(self, request, name, version):
        data = _valid(UpdateSerializer, request.data)
        updated = services.version_update(actor=request.user, version=selectors.version_get(name, version), **data)
        return Response(ModelVersionSerializer(updated).data)


class VersionConvertView(RegistryView):
    permissions_by_method = {"POST": CHANGE_VERSION}

    @extend_schema(request=None, responses={202: ModelVersionSerializer})
    def post(self, request, name, version):
        """Queue converting the version's Keras 3 archive to a SavedModel; 202 with the version."""
        queued = services.version_convert_request(actor=request.user, version=selectors.version_get(name, version))
        return Response(ModelVersionSerializer(queued).data, status=status.HTTP_202_ACCEPTED)


class VersionRunView(RegistryView):
    permissions_by_method = {"GET": VIEW_VERSION}

    @extend_schema(responses=RunSerializer)
    def get(self, request, name, version):
        view = selectors.version_run(selectors.version_get(name, version))
        if view.unavailable:
            raise UpstreamUnavailable(view.error)
        if view.run is None:
            raise NotFound(view.error)
        return Response(RunSerializer(view.run).data)


class VersionSearchView(RegistryView):
    permissions_by_method = {"GET": VIEW_VERSION}

    @extend_schema(
        parameters=[VersionFilterSerializer], operation_id="versions_list", responses=paged(ModelVersionSerializer)
    )
    def get(self, request):
        filters = _valid(VersionFilterSerializer, request.query_params)
        model_name = filters.pop("model")
        model = selectors.model_get(model_name) if model_name else None
        return self.paginate(selectors.version_list(model=model, **filters), ModelVersionSerializer, NewestFirst)


class SyncView(RegistryView):
    permissions_by_method = {"POST": "registry.sync_registry"}

    @extend_schema(request=None, responses={202: inline_serializer("SyncQueued", {"detail": serializers.CharField()})})
    def post(self, request):
        on_commit_safely(sync_registry_task.delay, what="Sync now")
        return Response({"detail": "Registry sync queued."}, status=status.HTTP_202_ACCEPTED)
