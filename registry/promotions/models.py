"""Environments, promotion requests and their reviews, and the history of what was live where."""

import uuid

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q

from console import perms
from console.choices import BadgeChoices
from registry.models import ModelVersion, RegisteredModel

from .webhook_address import webhook_host


class Environment(models.Model):
    name = models.SlugField(max_length=50, unique=True)
    # Order on the promotion path: staging (1) comes before production (2).
    position = models.PositiveSmallIntegerField(unique=True)
    # The MLflow alias this environment owns; it moves only through Modelgate.
    alias = models.SlugField(max_length=50, unique=True)
    required_approvals = models.PositiveSmallIntegerField(default=1)
    approver_group = models.ForeignKey(
        Group,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who may approve. Empty means the 'approver' role.",
    )
    allow_self_approval = models.BooleanField(default=False)
    # Protected: self-approval is impossible and a policy change waits for a second admin.
    protected = models.BooleanField(
        default=False, help_text="Self-approval is refused and policy changes need a second admin to confirm."
    )
    require_previous = models.BooleanField(
        default=True, help_text="A version must have been live in the previous environment first."
    )
    # [{"metric": "accuracy", "op": ">=", "value": 0.92}, ...]
    metric_thresholds = models.JSONField(default=list, blank=True)
    require_signature = models.BooleanField(default=True)
    require_compatible_signature = models.BooleanField(default=True)
    require_servable = models.BooleanField(default=True)
    request_ttl_hours = models.PositiveIntegerField(default=72, help_text="Pending requests expire after this.")
    webhook_url = models.URLField(blank=True)
    webhook_secret = models.CharField(
        max_length=200, blank=True, help_text="Signs deliveries (HMAC-SHA256). Never shown again once saved."
    )

    # What a second admin must confirm on a protected environment.
    POLICY_FIELDS = (
        "required_approvals",
        "approver_group",
        "allow_self_approval",
        "require_previous",
        "metric_thresholds",
        "require_signature",
        "require_compatible_signature",
        "require_servable",
        "protected",
    )
    # Not a column: the spans serving here now, set by selectors.environment_list_with_live.
    live_now: list["LiveSpan"]

    class Meta:
        ordering = ["position"]
        constraints = [
            models.CheckConstraint(
                condition=~(Q(protected=True) & Q(allow_self_approval=True)),
                name="protected_environment_no_self_approval",
            )
        ]

    def __str__(self):
        return self.name

    @property
    def webhook_host(self) -> str:
        """All that pages and the API show of the URL to anyone (its path can carry a credential)."""
        return webhook_host(self.webhook_url)


class PolicyChangeState(BadgeChoices):
    PENDING = "pending", "warning", "Waiting for a second admin"
    CONFIRMED = "confirmed", "ok", "Confirmed"
    WITHDRAWN = "withdrawn", "muted", "Withdrawn"


class PolicyChange(models.Model):
    """A proposed change to a protected environment's policy: it takes effect only when a
    second admin confirms it; the proposer may withdraw it."""

    PENDING, CONFIRMED, WITHDRAWN = PolicyChangeState.PENDING, PolicyChangeState.CONFIRMED, PolicyChangeState.WITHDRAWN
    STATES = PolicyChangeState.choices

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="policy_changes")
    state = models.CharField(max_length=20, choices=STATES, default=PENDING)
    # {"field": value} for the policy fields that change; approver_group by name.
    proposed = models.JSONField()
    # The same fields as they were when proposed: a change confirmed later applies only onto these.
    current = models.JSONField()
    reason = models.TextField(blank=True)
    proposed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment"], condition=Q(state="pending"), name="one_pending_policy_change_per_environment"
            )
        ]

    def __str__(self):
        return f"policy change #{self.pk} of {self.environment}"


class PromotionState(BadgeChoices):
    REQUESTED = "requested", "warning", "Requested"
    BLOCKED = "blocked", "error", "Blocked by a gate"
    PENDING = "pending_approval", "warning", "Pending approval"
    APPROVED = "approved", "ok", "Approved, waiting for deployment"
    REJECTED = "rejected", "error", "Rejected"
    CANCELLED = "cancelled", "muted", "Cancelled"
    EXPIRED = "expired", "muted", "Expired"
    DEPLOYING = "deploying", "blue", "Deploying"
    LIVE = "live", "ok", "Live"
    FAILED = "failed", "error", "Failed"
    ROLLED_BACK = "rolled_back", "error", "Rolled back"
    DONE = "done", "muted", "Done"


class GateResult(BadgeChoices):
    """A gate's verdict in ``PromotionRequest.gate_results`` (``{"passed": bool, …}``)."""

    PASS = "pass", "ok", "pass"
    FAIL = "fail", "error", "fail"


class PromotionRequest(models.Model):
    State = PromotionState
    REQUESTED, BLOCKED, PENDING, APPROVED = State.REQUESTED, State.BLOCKED, State.PENDING, State.APPROVED
    REJECTED, CANCELLED, EXPIRED, DEPLOYING = State.REJECTED, State.CANCELLED, State.EXPIRED, State.DEPLOYING
    LIVE, FAILED, ROLLED_BACK, DONE = State.LIVE, State.FAILED, State.ROLLED_BACK, State.DONE
    STATES = PromotionState.choices
    # Open: waiting for a decision. A blocked request is final: it stays blocked.
    OPEN = (REQUESTED, PENDING)
    CANCELLABLE = (REQUESTED, PENDING, APPROVED)
    PROMOTE, ROLLBACK, REDEPLOY, UNDEPLOY = "promote", "rollback", "redeploy", "undeploy"
    KINDS = [(PROMOTE, "Promotion"), (ROLLBACK, "Rollback"), (REDEPLOY, "Redeploy"), (UNDEPLOY, "Undeploy")]

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="promotion_requests")
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="promotion_requests")
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="requests")
    state = models.CharField(max_length=20, choices=STATES, default=REQUESTED)
    state_reason = models.TextField(blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    justification = models.TextField()
    breaking_change = models.BooleanField(default=False)
    # What is asked: a promotion, or an operation on what serves (the version is the one
    # serving for redeploy and undeploy). Every kind goes through the environment's approvals.
    kind = models.CharField(max_length=20, choices=KINDS, default=PROMOTE)
    gate_results = models.JSONField(default=list)
    gates_checked_at = models.DateTimeField(null=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    deployment_queued_at = models.DateTimeField(null=True, blank=True)
    superseded_by = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The rollout plan approved with the request (CANARY.md): {"strategy": "all_at_once"} or
    # {"strategy": "canary", "steps": [...], "analysis": {...}}. Empty: all at once.
    plan = models.JSONField(default=dict, blank=True)
    # Not a column: the state a request had before services._supersede cancelled it, kept on
    # the instance for the audit row written after.
    before_state: str

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("review_promotionrequest", "Can approve or reject promotion requests"),
            ("comment_promotionrequest", "Can comment on promotion requests"),
            ("cancel_any_promotionrequest", "Can cancel anyone's promotion request"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "environment"],
                condition=Q(state__in=("requested", "pending_approval")),
                name="one_open_request_per_model_environment",
            )
        ]
        indexes = [
            models.Index(fields=["state", "created_at"], name="request_state_idx"),
            models.Index(fields=["environment", "-created_at"], name="request_env_idx"),
        ]

    def __str__(self):
        return f"#{self.pk} {self.model.name} v{self.version.version} → {self.environment.name}"

    @property
    def is_open(self) -> bool:
        return self.state in self.OPEN

    @property
    def is_rollback(self) -> bool:
        return self.kind == self.ROLLBACK

    @property
    def is_cancellable(self) -> bool:
        return self.state in self.CANCELLABLE

    def may_cancel(self, user) -> bool:
        """Who may cancel: the requester, or whoever may cancel anyone's request."""
        return self.requested_by_id == user.pk or user.has_perm(perms.CANCEL_ANY_PROMOTION)

    def can_be_cancelled_by(self, user) -> bool:
        """What the page offers: ``services.promotion_cancel`` refuses exactly the rest."""
        return self.is_cancellable and self.may_cancel(user)

    @property
    def gates_passed(self) -> bool:
        return all(g["passed"] for g in self.gate_results)


class ReviewDecision(BadgeChoices):
    APPROVE = "approve", "ok", "Approved"
    REJECT = "reject", "error", "Rejected"


class Review(models.Model):
    APPROVE, REJECT = ReviewDecision.APPROVE, ReviewDecision.REJECT
    request = models.ForeignKey(PromotionRequest, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=10, choices=ReviewDecision.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [models.UniqueConstraint(fields=["request", "reviewer"], name="one_review_per_reviewer")]


class Comment(models.Model):
    request = models.ForeignKey(PromotionRequest, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reply_to = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="replies")
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    # Not a column: the replies, set by the request page's views._comment_tree.
    children: list["Comment"]

    class Meta:
        ordering = ["created_at", "id"]


class LiveSpan(models.Model):
    """Version N of a model served in an environment from started_at until ended_at (None: still)."""

    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="spans")
    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="live_spans")
    version_number = models.PositiveIntegerField()
    request = models.ForeignKey(PromotionRequest, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["environment", "model", "started_at"], name="span_lookup_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "model"],
                condition=Q(ended_at__isnull=True),
                name="one_live_span_per_model_environment",
            )
        ]


class DeliveryState(BadgeChoices):
    PENDING = "pending", "warning", "Pending"
    DELIVERED = "delivered", "ok", "Delivered"
    FAILED = "failed", "error", "Failed"


class WebhookDelivery(models.Model):
    PENDING, DELIVERED, FAILED = DeliveryState.PENDING, DeliveryState.DELIVERED, DeliveryState.FAILED
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="deliveries")
    delivery_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    event = models.CharField(max_length=50)
    payload = models.JSONField()
    url = models.URLField()
    state = models.CharField(max_length=10, default=PENDING, choices=DeliveryState.choices)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ["-created_at", "-id"]
