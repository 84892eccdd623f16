"""REST API for deployments: what serves where, every revision, each rollout's steps, and
the operator's verbs (redeploy, undeploy, request a rollback). Views validate shapes and
call selectors or services; refusals come back in the shared JSON error shape."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from console import perms
from console.api import paginated, valid
from console.permissions import MethodPermissions
from console.schema import paged
from registry.promotions import selectors as promotion_selectors
from registry.promotions.api import PromotionDetailSerializer
from registry.promotions.models import PromotionRequest

from . import selectors, services
from .serializers import (
    CanaryAbortSerializer,
    DeploymentDetailSerializer,
    DeploymentFilterSerializer,
    DeploymentListSerializer,
    RedeploySerializer,
    RollbackSerializer,
    RolloutDetailSerializer,
    RolloutSerializer,
    StopSerializer,
    UndeploySerializer,
)


def _deployment(pk: int):
    deployment = selectors.deployment_get(pk)
    deployment.active = selectors.active_rollout(deployment)
    return deployment


def _rollout_response(rollout_id: int) -> Response:
    return Response(RolloutDetailSerializer(selectors.rollout_get(rollout_id)).data, status=status.HTTP_202_ACCEPTED)


def _request_response(request_id: int) -> Response:
    req = promotion_selectors.request_get(request_id, discussion=True)
    return Response(PromotionDetailSerializer(req).data, status=status.HTTP_201_CREATED)


def _outcome_response(outcome) -> Response:
    """202 with the rollout when it runs at once; 201 with the request when approvers decide."""
    if isinstance(outcome, PromotionRequest):
        return _request_response(outcome.pk)
    return _rollout_response(outcome.pk)


class DeploymentListView(APIView):
    permission_classes = [MethodPermissions]
    permissions_by_method = {"GET": perms.VIEW_DEPLOYMENT}
    ordering = ("id",)

    @extend_schema(
        parameters=[DeploymentFilterSerializer],
        operation_id="deployments_list",
        responses=paged(DeploymentListSerializer),
    )
    def get(self, request):
        filters = valid(DeploymentFilterSerializer, request.query_params)
        return paginated(self, selectors.deployment_list(**filters), DeploymentListSerializer)


class DeploymentDetailView(APIView):
    permission_classes = [MethodPermissions]
    permissions_by_method = {"GET": perms.VIEW_DEPLOYMENT}

    @extend_schema(responses=DeploymentDetailSerializer)
    def get(self, request, pk):
        return Response(DeploymentDetailSerializer(_deployment(pk)).data)


class DeploymentRolloutsView(APIView):
    """Every revision of one deployment, newest first."""

    permission_classes = [MethodPermissions]
    permissions_by_method = {"GET": perms.VIEW_ROLLOUT}
    ordering = ("-revision",)

    @extend_schema(operation_id="deployments_rollouts_list", responses=paged(RolloutSerializer))
    def get(self, request, pk):
        return paginated(self, selectors.deployment_history(selectors.deployment_get(pk)), RolloutSerializer)


class RolloutDetailView(APIView):
    permission_classes = [MethodPermissions]
    permissions_by_method = {"GET": perms.VIEW_ROLLOUT}

    @extend_schema(responses=RolloutDetailSerializer)
    def get(self, request, pk):
        return Response(RolloutDetailSerializer(selectors.rollout_get(pk)).data)


class RedeployView(APIView):
    """Apply the live revision again (after drift, or to restart its model servers). Where
    the environment requires approval: 201 with a redeploy request; else 202 with the rollout."""

    permission_classes = [MethodPermissions]
    permissions_by_method = {"POST": perms.OPERATE_DEPLOYMENT}

    @extend_schema(request=RedeploySerializer, responses={202: RolloutDetailSerializer, 201: PromotionDetailSerializer})
    def post(self, request, pk):
        data = valid(RedeploySerializer, request.data)
        return _outcome_response(services.rollout_redeploy(actor=request.user, deployment_id=pk, reason=data["reason"]))


class UndeployView(APIView):
    """Stop serving. Where the environment requires approval: 201 with an undeploy request;
    else 202 with the rollout."""

    permission_classes = [MethodPermissions]
    permissions_by_method = {"POST": perms.OPERATE_DEPLOYMENT}

    @extend_schema(request=UndeploySerializer, responses={202: RolloutDetailSerializer, 201: PromotionDetailSerializer})
    def post(self, request, pk):
        data = valid(UndeploySerializer, request.data)
        return _outcome_response(services.rollout_undeploy(actor=request.user, deployment_id=pk, reason=data["reason"]))


class StopView(APIView):
    """Break-glass: stop serving at once, without approval (admins). The reason is
    mandatory; the approver group is notified and the audit event is deployment.break_glass_stop."""

    permission_classes = [MethodPermissions]
    permissions_by_method = {"POST": perms.BREAK_GLASS}

    @extend_schema(request=StopSerializer, responses={202: RolloutDetailSerializer})
    def post(self, request, pk):
        data = valid(StopSerializer, request.data)
        rollout = services.deployment_break_glass_stop(actor=request.user, deployment_id=pk, reason=data["reason"])
        return _rollout_response(rollout.pk)


class RollbackView(APIView):
    """Ask to serve an earlier good revision again: a promotion request with is_rollback,
    approved under the environment's policy and then rolled out."""

    permission_classes = [MethodPermissions]
    permissions_by_method = {"POST": perms.REQUEST_PROMOTION}

    @extend_schema(request=RollbackSerializer, responses={201: PromotionDetailSerializer})
    def post(self, request, pk):
        data = valid(RollbackSerializer, request.data)
        req = services.rollback_request(
            actor=request.user, deployment_id=pk, revision=data["revision"], justification=data["justification"]
        )
        return _request_response(req.pk)


class CanaryPromoteView(APIView):
    """Promote a canary now: its remaining steps are skipped and the version becomes stable.
    The environment's approvers only (not the requester where self-approval is refused);
    audited. 202: the worker carries it out at once (409 once the canary left its steps)."""

    permission_classes = [MethodPermissions]
    permissions_by_method = {"POST": perms.VIEW_ROLLOUT}  # who may is selectors.is_approver, in the service

    @extend_schema(request=None, responses={202: RolloutDetailSerializer})
    def post(self, request, pk):
        services.canary_promote_now(rollout_id=pk, actor=request.user)
        return _rollout_response(pk)


class CanaryAbortView(APIView):
    """Abort a canary: all traffic back to the stable version, the canary removed, the alias
    untouched. The requester or the environment's approvers; audited. 202: the worker carries
    it out at once (409 once the canary left its steps)."""

    permission_classes = [MethodPermissions]
    permissions_by_method = {"POST": perms.VIEW_ROLLOUT}  # the requester or an approver, in the service

    @extend_schema(request=CanaryAbortSerializer, responses={202: RolloutDetailSerializer})
    def post(self, request, pk):
        data = valid(CanaryAbortSerializer, request.data)
        services.canary_abort(rollout_id=pk, actor=request.user, reason=data["reason"])
        return _rollout_response(pk)
