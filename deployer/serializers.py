"""Shapes of deployments and rollouts in the REST API. Read-only: the services decide."""

from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from deployer.canary.progress import canary_state
from deployer.endpoints import endpoint
from deployer.models import CanaryVerdict, Deployment, Rollout, RolloutStrategy
from registry.promotions.api import CanaryPlanSerializer  # the plan's one component in the schema
from registry.promotions.models import Review

STEP_STATES = ["pending", "running", "done", "failed", "skipped"]


def _state_field(choices, help_text_suffix: str = "", **kwargs) -> serializers.CharField:
    """A state as a plain string whose values the description lists. Not an enum: the
    promotions API already has a "state" enum, and drf-spectacular would name a second
    choice set under that name by collision (State981Enum) and warn. To publish these as
    enums, add their choice sets to SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]."""
    return serializers.CharField(
        read_only=True,
        help_text="One of: " + ", ".join(f"`{c}`" for c in choices) + "." + help_text_suffix,
        **kwargs,
    )


class StepTimeField(serializers.DateTimeField):
    """Steps keep their times as ISO strings in JSON; shown like every other time."""

    def to_representation(self, value):
        return super().to_representation(parse_datetime(value) if isinstance(value, str) else value)


class StepSerializer(serializers.Serializer):
    name = serializers.CharField()
    title = serializers.CharField(default="")
    state = _state_field(STEP_STATES)
    started_at = StepTimeField(allow_null=True, default=None)
    finished_at = StepTimeField(allow_null=True, default=None)
    detail = serializers.CharField(default="", allow_blank=True)


class DriftChangeSerializer(serializers.Serializer):
    object = serializers.CharField(help_text="Kind/name of the object that differs.")
    field = serializers.CharField()
    applied = serializers.JSONField(allow_null=True, help_text="What the live revision applied.")
    live = serializers.JSONField(allow_null=True, help_text="What runs now.")


def requester(rollout: Rollout) -> str:
    """Who asked for it: the promotion's requester, the operator, or the worker."""
    if rollout.request_id and rollout.request:
        return rollout.request.requested_by.get_username()
    if rollout.requested_by_id and rollout.requested_by:
        return rollout.requested_by.get_username()
    return "worker"


class TrackNumbersSerializer(serializers.Serializer):
    requests = serializers.IntegerField()
    # The metaclass moves declared fields off the class, so this does not hide Serializer.errors.
    errors = serializers.IntegerField()  # type: ignore[assignment]
    error_rate_pct = serializers.FloatField()
    p95_ms = serializers.FloatField(allow_null=True)


class CanaryNumbersSerializer(serializers.Serializer):
    stable = TrackNumbersSerializer()
    canary = TrackNumbersSerializer()


class CanaryVerdictSerializer(serializers.Serializer):
    step = serializers.IntegerField(help_text="The plan step judged, from 1.")
    weight = serializers.IntegerField()
    result = _state_field([c for c, _ in CanaryVerdict.choices], help_text_suffix=" What the analysis found.")
    passed = serializers.BooleanField(help_text="Whether the canary went on (an inconclusive step follows the plan).")
    reason = serializers.CharField(help_text="The comparison, quoting both tracks' numbers.")
    numbers = CanaryNumbersSerializer()
    window_start = StepTimeField()
    window_end = StepTimeField()


class CanaryWaitingSerializer(serializers.Serializer):
    reason = serializers.CharField()
    numbers = CanaryNumbersSerializer()
    at = StepTimeField(help_text="When the step was last found inconclusive.")


class CanaryDecisionSerializer(serializers.Serializer):
    action = serializers.CharField(help_text="`promote` (promote now) or `abort`.")
    actor = serializers.CharField()
    at = StepTimeField()
    reason = serializers.CharField(allow_blank=True)


class CanarySerializer(serializers.Serializer):
    """A canary rollout's state, from ``Rollout.canary``."""

    plan = CanaryPlanSerializer()
    description = serializers.CharField(help_text='In words: "10 % for 5 min, then 50 % for 10 min, then all".')
    step = serializers.IntegerField(allow_null=True, help_text="The current plan step, from 1; null before the first.")
    steps_total = serializers.IntegerField()
    weight = serializers.IntegerField(help_text="Per cent of the traffic the canary takes now (100 once promoted).")
    step_started_at = StepTimeField(allow_null=True)
    hold_until = StepTimeField(allow_null=True, help_text="When the current step is judged.")
    seconds_left = serializers.FloatField(
        allow_null=True, help_text="Until the current step is judged; null when no step holds now."
    )
    waiting = CanaryWaitingSerializer(
        allow_null=True, help_text="Set while the step waits for enough requests (an inconclusive window)."
    )
    verdicts = CanaryVerdictSerializer(many=True)
    decision = CanaryDecisionSerializer(allow_null=True, help_text="An operator's promote-now or abort, if any.")


class RolloutSerializer(serializers.ModelSerializer):
    """One revision, as in a deployment's history."""

    version = serializers.IntegerField(source="version.version", allow_null=True, default=None)
    request = serializers.IntegerField(source="request_id", allow_null=True)
    requested_by = serializers.SerializerMethodField()
    approvers = serializers.SerializerMethodField()
    duration_seconds = serializers.SerializerMethodField()
    state = _state_field([s for s, _ in Rollout.STATES])
    strategy = _state_field([s for s, _ in RolloutStrategy.choices])

    class Meta:
        model = Rollout
        fields = [
            "id",
            "deployment",
            "revision",
            "kind",
            "strategy",
            "version",
            "state",
            "reason",
            "request",
            "requested_by",
            "approvers",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
            "duration_seconds",
        ]

    def get_requested_by(self, rollout) -> str:
        return requester(rollout)

    def get_approvers(self, rollout) -> list[str]:
        if rollout.request_id is None or rollout.request is None:
            return []
        reviews = getattr(rollout.request, "approvals", None)  # prefetched by deployment_history
        if reviews is None:
            reviews = rollout.request.reviews.filter(decision=Review.APPROVE).select_related("reviewer")
        return [review.reviewer.get_username() for review in reviews]

    def get_duration_seconds(self, rollout) -> float | None:
        return rollout.duration.total_seconds() if rollout.duration is not None else None


class RolloutDetailSerializer(RolloutSerializer):
    steps = StepSerializer(many=True, read_only=True)
    manifests = serializers.ListField(
        child=serializers.DictField(), read_only=True, help_text="The objects this revision applied, as rendered."
    )
    restore_to = serializers.IntegerField(
        source="restore_to_id", allow_null=True, help_text="The rollout a failure restores."
    )
    canary = serializers.SerializerMethodField()

    class Meta(RolloutSerializer.Meta):
        fields = RolloutSerializer.Meta.fields + ["restore_to", "steps", "manifests", "canary"]

    @extend_schema_field(CanarySerializer(allow_null=True))
    def get_canary(self, rollout):
        """A canary's plan, current step and weight, time left and verdicts; null when the
        rollout goes all at once."""
        state = canary_state(rollout)
        return None if state is None else CanarySerializer(state).data


class DeploymentSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name")
    environment = serializers.CharField(source="target.environment.name")
    backend = serializers.CharField(source="target.backend")
    live_rollout = serializers.IntegerField(source="live_rollout_id", allow_null=True)
    live_revision = serializers.IntegerField(source="live_rollout.revision", allow_null=True, default=None)
    live_version = serializers.IntegerField(source="live_rollout.version.version", allow_null=True, default=None)
    state = _state_field([s for s, _ in Deployment.STATES])
    url = serializers.SerializerMethodField(
        help_text="Where clients call the model while it serves, by its environment's label (append "
        "`:predict`): the local model server, or the Service's in-cluster URL on Kubernetes."
    )
    external_url = serializers.SerializerMethodField(
        help_text="The same path under the target's external base URL, if it has one."
    )

    class Meta:
        model = Deployment
        fields = [
            "id",
            "model",
            "environment",
            "backend",
            "name",
            "state",
            "url",
            "external_url",
            "live_rollout",
            "live_revision",
            "live_version",
            "drift_state",
            "drift_checked_at",
            "created_at",
        ]

    def get_url(self, deployment) -> str | None:
        return endpoint(deployment).url

    def get_external_url(self, deployment) -> str | None:
        return endpoint(deployment).external_url


class LastRolloutSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="last_rollout_id")
    revision = serializers.IntegerField(source="last_rollout_revision")
    state = _state_field([s for s, _ in Rollout.STATES], source="last_rollout_state")
    created_at = serializers.DateTimeField(source="last_rollout_at")


class PendingRequestSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pending_request_id")
    kind = serializers.CharField(source="pending_request_kind", help_text="promote, rollback, redeploy or undeploy.")
    state = serializers.CharField(source="pending_request_state")


class DeploymentListSerializer(DeploymentSerializer):
    last_rollout = serializers.SerializerMethodField()
    pending_request = serializers.SerializerMethodField()

    class Meta(DeploymentSerializer.Meta):
        fields = DeploymentSerializer.Meta.fields + ["last_rollout", "pending_request"]

    @extend_schema_field(PendingRequestSerializer(allow_null=True))
    def get_pending_request(self, deployment):
        """The open request (promotion, rollback, redeploy or undeploy) waiting for a decision here."""
        if getattr(deployment, "pending_request_id", None) is None:
            return None
        return PendingRequestSerializer(deployment).data

    @extend_schema_field(LastRolloutSerializer(allow_null=True))
    def get_last_rollout(self, deployment):
        """From the annotations of selectors.deployment_list."""
        if getattr(deployment, "last_rollout_id", None) is None:
            return None
        return LastRolloutSerializer(deployment).data


class DeploymentDetailSerializer(DeploymentSerializer):
    drift_diff = DriftChangeSerializer(many=True, read_only=True)
    active_rollout = serializers.SerializerMethodField()
    local_port = serializers.IntegerField(allow_null=True, read_only=True)
    namespace = serializers.CharField(source="target.namespace", read_only=True)

    class Meta(DeploymentSerializer.Meta):
        fields = DeploymentSerializer.Meta.fields + ["drift_diff", "active_rollout", "local_port", "namespace"]

    def get_active_rollout(self, deployment) -> int | None:
        """The rollout queued or running now (set by the view from selectors.active_rollout)."""
        active = getattr(deployment, "active", None)
        return active.pk if active is not None else None


class DeploymentFilterSerializer(serializers.Serializer):
    environment = serializers.CharField(required=False, default="", max_length=50)
    model = serializers.CharField(required=False, default="", max_length=256)


class UndeploySerializer(serializers.Serializer):
    reason = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=10000,
        help_text="Why the model stops serving (required). Where the environment "
        "requires approval it is the request's justification.",
    )


class RedeploySerializer(serializers.Serializer):
    reason = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=10000,
        help_text="Why (optional): the justification approvers read where the environment requires approval.",
    )


class StopSerializer(serializers.Serializer):
    reason = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=10000,
        help_text="Why this cannot wait for approval (required); the approvers are told.",
    )


class CanaryAbortSerializer(serializers.Serializer):
    reason = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=10000, help_text="Why (optional); it is audited."
    )


class RollbackSerializer(serializers.Serializer):
    revision = serializers.IntegerField(min_value=1, help_text="An earlier revision that went live.")
    justification = serializers.CharField(max_length=10000)
