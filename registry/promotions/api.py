"""REST API for promotions: create, list, detail, approve, reject, cancel, comment, and the
history of an environment ("which version served production at time T?")."""

from collections.abc import Callable

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from console import perms
from console.api import paginated, valid
from console.errors import ServiceError
from console.permissions import MethodPermissions
from console.schema import paged
from registry import selectors as registry_selectors

from . import selectors, services
from .models import (
    Comment,
    Environment,
    LiveSpan,
    PolicyChange,
    PromotionRequest,
    Review,
)


class ReviewSerializer(serializers.ModelSerializer):
    reviewer = serializers.CharField(source="reviewer.username")

    class Meta:
        model = Review
        fields = ["reviewer", "decision", "comment", "created_at"]


class CommentSerializer(serializers.ModelSerializer):
    author = serializers.CharField(source="author.username")

    class Meta:
        model = Comment
        fields = ["id", "author", "body", "reply_to", "created_at"]


class CanaryStepSerializer(serializers.Serializer):
    weight = serializers.IntegerField(help_text="The canary's share of the traffic, 1 to 99 percent.")
    seconds = serializers.IntegerField(help_text="How long the step holds before it is judged.")


class CanaryAnalysisSerializer(serializers.Serializer):
    min_requests = serializers.IntegerField(help_text="Fewer canary requests in a step: inconclusive.")
    max_error_rate_increase_pp = serializers.FloatField(
        help_text="The canary's error rate is at most the stable version's plus this, in percentage points."
    )
    max_p95_ratio = serializers.FloatField(help_text="The canary's p95 latency is at most this times the stable's.")
    max_error_rate_pct = serializers.FloatField(allow_null=True, help_text="Absolute ceiling, or null.")
    max_p95_ms = serializers.FloatField(allow_null=True, help_text="Absolute ceiling, or null.")
    # Plain strings, not enums: one enum name per schema, and the deployer's rollouts carry a strategy too.
    inconclusive = serializers.CharField(help_text="One of: `wait`, `pass`, `fail`.")


class CanaryPlanSerializer(serializers.Serializer):
    steps = CanaryStepSerializer(many=True, help_text="Rising weights; after the last step the canary takes all.")
    analysis = CanaryAnalysisSerializer()


class RequestPlanSerializer(serializers.Serializer):
    """The rollout plan a request carries, fixed when it was made: approving approves it."""

    strategy = serializers.CharField(help_text="One of: `all_at_once`, `canary`.")
    reason = serializers.CharField(
        required=False,
        help_text="Why this request goes all at once whatever the policy (rollback, redeploy, undeploy).",
    )
    steps = CanaryStepSerializer(many=True, required=False, help_text="With `canary`: the traffic steps.")
    analysis = CanaryAnalysisSerializer(required=False, help_text="With `canary`: how each step is judged.")


class PromotionSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name")
    version = serializers.IntegerField(source="version.version")
    environment = serializers.CharField(source="environment.name")
    requested_by = serializers.CharField(source="requested_by.username")
    state_label = serializers.CharField(source="get_state_display")
    is_rollback = serializers.BooleanField(read_only=True)
    # A plain string (the deployer's rollouts have their own "kind" enum; a second would collide).
    kind = serializers.CharField(read_only=True, help_text="One of: `promote`, `rollback`, `redeploy`, `undeploy`.")
    plan = RequestPlanSerializer(read_only=True)
    plan_summary = serializers.CharField(
        source="plan_description", read_only=True, help_text="The plan in words, as the request page says it."
    )

    class Meta:
        model = PromotionRequest
        fields = [
            "id",
            "model",
            "version",
            "environment",
            "kind",
            "state",
            "state_label",
            "state_reason",
            "requested_by",
            "justification",
            "breaking_change",
            "is_rollback",
            "plan",
            "plan_summary",
            "gate_results",
            "created_at",
            "updated_at",
            "decided_at",
            "expires_at",
            "deployment_queued_at",
            "superseded_by",
        ]


class PromotionDetailSerializer(PromotionSerializer):
    reviews = ReviewSerializer(many=True, read_only=True)
    comments = CommentSerializer(many=True, read_only=True)

    class Meta(PromotionSerializer.Meta):
        fields = PromotionSerializer.Meta.fields + ["reviews", "comments"]


class PromotionCreateSerializer(serializers.Serializer):
    model = serializers.CharField(max_length=256)
    version = serializers.IntegerField(min_value=1)
    environment = serializers.CharField(max_length=50)
    justification = serializers.CharField(max_length=10000)
    breaking_change = serializers.BooleanField(default=False)


class PromotionFilterSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=[s for s, _ in PromotionRequest.STATES], required=False, default="")
    environment = serializers.CharField(required=False, default="", max_length=50)
    model = serializers.CharField(required=False, default="", max_length=256)
    requested_by = serializers.CharField(required=False, default="", max_length=150)


class DecisionSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)


class CancelSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)


class CommentCreateSerializer(serializers.Serializer):
    body = serializers.CharField(max_length=10000)
    reply_to = serializers.IntegerField(required=False, allow_null=True, default=None)


class PromotionListView(APIView):
    permission_classes = [MethodPermissions]
    permissions_by_method = {"GET": perms.VIEW_PROMOTION, "POST": perms.REQUEST_PROMOTION}
    ordering = ("-created_at", "-id")

    @extend_schema(
        parameters=[PromotionFilterSerializer], operation_id="promotions_list", responses=paged(PromotionSerializer)
    )
    def get(self, request):
        filters = valid(PromotionFilterSerializer, request.query_params)
        return paginated(self, selectors.request_list(**filters), PromotionSerializer)

    @extend_schema(request=PromotionCreateSerializer, responses={201: PromotionDetailSerializer})
    def post(self, request):
        data = valid(PromotionCreateSerializer, request.data)
        version = registry_selectors.version_get(data["model"], data["version"])
        environment = selectors.environment_get(data["environment"])
        req = services.promotion_request(
            actor=request.user,
            version=version,
            environment=environment,
            justification=data["justification"],
            breaking_change=data["breaking_change"],
        )
        return Response(
            PromotionDetailSerializer(selectors.request_get(req.pk, discussion=True)).data,
            status=status.HTTP_201_CREATED,
        )


class PromotionDetailView(APIView):
    permission_classes = [MethodPermissions]
    permissions_by_method = {"GET": perms.VIEW_PROMOTION}

    @extend_schema(responses=PromotionDetailSerializer)
    def get(self, request, pk):
        return Response(PromotionDetailSerializer(selectors.request_get(pk, discussion=True)).data)


class _ActionView(APIView):
    permission_classes = [MethodPermissions]
    input_serializer: type[serializers.Serializer] = DecisionSerializer

    def act(self, request, pk, data):
        raise NotImplementedError

    def post(self, request, pk):
        data = valid(self.input_serializer, request.data)
        self.act(request, pk, data)
        return Response(PromotionDetailSerializer(selectors.request_get(pk, discussion=True)).data)


class ApproveView(_ActionView):
    permissions_by_method = {"POST": perms.VIEW_PROMOTION}  # who reviews is selectors.is_approver, in the service

    @extend_schema(request=DecisionSerializer, responses=PromotionDetailSerializer)
    def post(self, request, pk):
        return super().post(request, pk)

    def act(self, request, pk, data):
        services.promotion_approve(actor=request.user, request_id=pk, comment=data["comment"])


class RejectView(_ActionView):
    permissions_by_method = {"POST": perms.VIEW_PROMOTION}  # who reviews is selectors.is_approver, in the service

    @extend_schema(request=DecisionSerializer, responses=PromotionDetailSerializer)
    def post(self, request, pk):
        return super().post(request, pk)

    def act(self, request, pk, data):
        services.promotion_reject(actor=request.user, request_id=pk, comment=data["comment"])


class CancelView(_ActionView):
    permissions_by_method = {"POST": perms.VIEW_PROMOTION}  # the service allows the requester or an admin
    input_serializer = CancelSerializer

    @extend_schema(request=CancelSerializer, responses=PromotionDetailSerializer)
    def post(self, request, pk):
        return super().post(request, pk)

    def act(self, request, pk, data):
        services.promotion_cancel(actor=request.user, request_id=pk, reason=data["reason"])


class CommentView(APIView):
    permission_classes = [MethodPermissions]
    permissions_by_method = {"GET": perms.VIEW_PROMOTION, "POST": perms.COMMENT_PROMOTION}

    @extend_schema(responses=CommentSerializer(many=True))
    def get(self, request, pk):
        return Response(CommentSerializer(selectors.request_get(pk, discussion=True).comments.all(), many=True).data)

    @extend_schema(request=CommentCreateSerializer, responses={201: CommentSerializer})
    def post(self, request, pk):
        data = valid(CommentCreateSerializer, request.data)
        comment = services.promotion_comment(
            actor=request.user, request_id=pk, body=data["body"], reply_to=data["reply_to"]
        )
        return Response(CommentSerializer(comment).data, status=status.HTTP_201_CREATED)


class EnvironmentSerializer(serializers.ModelSerializer):
    approver_group = serializers.CharField(source="approver_group.name", default=None, allow_null=True)
    rollout_strategy = serializers.CharField(help_text="One of: `all_at_once`, `canary`.")
    canary_plan = serializers.JSONField(
        help_text="The canary plan ({} when none): `steps` and `analysis`, as a request's `plan` shows them."
    )

    class Meta:
        model = Environment
        fields = [
            "name",
            "position",
            "alias",
            "protected",
            "required_approvals",
            "approver_group",
            "allow_self_approval",
            "require_previous",
            "metric_thresholds",
            "require_signature",
            "require_compatible_signature",
            "require_servable",
            "rollout_strategy",
            "canary_plan",
            "request_ttl_hours",
        ]


class EnvironmentListView(APIView):
    permission_classes = [MethodPermissions]
    permissions_by_method = {"GET": perms.VIEW_ENVIRONMENT}

    @extend_schema(responses=EnvironmentSerializer(many=True))
    def get(self, request):
        return Response(EnvironmentSerializer(selectors.environment_list(), many=True).data)


class SpanSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name")
    version = serializers.IntegerField(source="version_number")

    class Meta:
        model = LiveSpan
        fields = ["model", "version", "started_at", "ended_at", "request"]


class HistoryQuerySerializer(serializers.Serializer):
    model = serializers.CharField(required=False, default="", max_length=256)
    at = serializers.DateTimeField(
        required=False, default=None, help_text="With model: answer which version served at this time."
    )


class EnvironmentHistoryView(APIView):
    permission_classes = [MethodPermissions]
    permissions_by_method = {"GET": perms.VIEW_ENVIRONMENT}

    @extend_schema(
        parameters=[HistoryQuerySerializer, OpenApiParameter("name", str, OpenApiParameter.PATH)],
        responses=SpanSerializer(many=True),
    )
    def get(self, request, name):
        env = selectors.environment_get(name)
        query = valid(HistoryQuerySerializer, request.query_params)
        model = None
        if query["model"]:
            model = registry_selectors.model_get(query["model"])
            if query["at"] is not None:
                span = selectors.live_span(environment=env, model=model, at=query["at"])
                return Response(
                    {
                        "environment": env.name,
                        "model": model.name,
                        "at": query["at"],
                        "version": span.version_number if span else None,
                        "span": SpanSerializer(span).data if span else None,
                    }
                )
        elif query["at"] is not None:
            raise ServiceError("Name the model whose version you ask about: ?model=<name>&at=<time>.", field="model")
        spans = selectors.span_list(environment=env, model=model)[:500]
        return Response(SpanSerializer(spans, many=True).data)


# --- policy changes (two admins) ------------------------------------------------------


class PolicyChangeSerializer(serializers.ModelSerializer):
    environment = serializers.CharField(source="environment.name")
    proposed_by = serializers.CharField(source="proposed_by.username")
    decided_by = serializers.CharField(source="decided_by.username", default=None)
    state = serializers.CharField(read_only=True, help_text="One of: `pending`, `confirmed`, `withdrawn`.")

    class Meta:
        model = PolicyChange
        fields = [
            "id",
            "environment",
            "state",
            "proposed",
            "current",
            "reason",
            "proposed_by",
            "decided_by",
            "created_at",
            "decided_at",
        ]


class PolicyChangeCreateSerializer(serializers.Serializer):
    """The policy fields to change (any subset) and why. They apply once a second admin confirms."""

    required_approvals = serializers.IntegerField(required=False, min_value=0, max_value=100)
    approver_group = serializers.CharField(required=False, allow_null=True, max_length=150)
    allow_self_approval = serializers.BooleanField(required=False)
    require_previous = serializers.BooleanField(required=False)
    metric_thresholds = serializers.JSONField(required=False)
    require_signature = serializers.BooleanField(required=False)
    require_compatible_signature = serializers.BooleanField(required=False)
    require_servable = serializers.BooleanField(required=False)
    protected = serializers.BooleanField(required=False)
    rollout_strategy = serializers.CharField(required=False, max_length=20, help_text="`all_at_once` or `canary`.")
    canary_plan = serializers.JSONField(
        required=False,
        help_text='{"steps": [{"weight": 10, "seconds": 300}, ...], "analysis": {"min_requests": 100, ...}}; '
        "{} for none. A canary strategy needs one.",
    )
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)


class PolicyChangeListView(APIView):
    permission_classes = [MethodPermissions]
    permissions_by_method = {"GET": perms.VIEW_ENVIRONMENT, "POST": perms.CHANGE_ENVIRONMENT}

    @extend_schema(
        parameters=[OpenApiParameter("name", str, OpenApiParameter.PATH)], responses=PolicyChangeSerializer(many=True)
    )
    def get(self, request, name):
        env = selectors.environment_get(name)
        changes = selectors.policy_change_list(env)[:200]
        return Response(PolicyChangeSerializer(changes, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("name", str, OpenApiParameter.PATH)],
        request=PolicyChangeCreateSerializer,
        responses={201: PolicyChangeSerializer},
    )
    def post(self, request, name):
        env = selectors.environment_get(name)
        data = dict(valid(PolicyChangeCreateSerializer, request.data))
        reason = data.pop("reason")
        change = services.policy_change_propose(actor=request.user, environment=env, changes=data, reason=reason)
        return Response(PolicyChangeSerializer(change).data, status=status.HTTP_201_CREATED)


class _PolicyChangeActionView(APIView):
    permission_classes = [MethodPermissions]
    permissions_by_method = {"POST": perms.CHANGE_ENVIRONMENT}
    verb: Callable[..., PolicyChange]  # the service each subclass sets

    @extend_schema(
        parameters=[OpenApiParameter("name", str, OpenApiParameter.PATH)],
        request=None,
        responses=PolicyChangeSerializer,
    )
    def post(self, request, name, pk):
        env = selectors.environment_get(name)
        change = self.verb(actor=request.user, change_id=pk, environment=env)
        return Response(PolicyChangeSerializer(change).data)


class PolicyChangeConfirmView(_PolicyChangeActionView):
    """A second admin confirms: the proposed values become the environment's policy."""

    verb = staticmethod(services.policy_change_confirm)


class PolicyChangeWithdrawView(_PolicyChangeActionView):
    """The proposer withdraws the change."""

    verb = staticmethod(services.policy_change_withdraw)
