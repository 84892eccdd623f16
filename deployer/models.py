"""Where models run (targets), what runs there (deployments) and every change to it (rollouts).

A Rollout is both the job and the revision: the row a worker claims and updates step by
step (so the browser shows progress and a restarted worker resumes), and afterwards the
record of what was applied, by whom, and how it ended.
"""

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from console.choices import BadgeChoices
from deployer.endpoints import base_url_problem
from registry.models import ModelVersion, RegisteredModel
from registry.promotions.models import Environment, PromotionRequest


class DeploymentTarget(models.Model):
    """How one environment's models are served.

    Kubernetes credentials are never stored here: the worker reads them at run time from
    the kubeconfig file at ``kubeconfig_path`` (a mounted secret, say) or from the
    in-cluster service account.
    """

    LOCAL, KUBERNETES = "local", "kubernetes"
    BACKENDS = [(LOCAL, "Local model server (one machine)"), (KUBERNETES, "Kubernetes")]

    environment = models.OneToOneField(Environment, on_delete=models.CASCADE, related_name="target")
    backend = models.CharField(max_length=20, choices=BACKENDS, default=LOCAL)
    in_cluster = models.BooleanField(default=False, help_text="Use the worker pod's service account.")
    kubeconfig_path = models.CharField(
        max_length=500,
        blank=True,
        help_text="Path of a kubeconfig file on the worker (e.g. a mounted secret). Empty: ~/.kube/config.",
    )
    kube_context = models.CharField(max_length=200, blank=True, help_text="Empty: the kubeconfig's current context.")
    namespace = models.CharField(max_length=63, default="modelgate-serving")
    external_base_url = models.CharField(
        max_length=300,
        blank=True,
        help_text="Where clients outside the cluster reach the models (an ingress or gateway that forwards "
        "/v1/models/<name>/… to the model's Service), e.g. https://models.example.com. "
        "Empty: in-cluster only.",
    )
    gateway_name = models.CharField(
        max_length=63,
        blank=True,
        help_text="A Gateway API Gateway (gateway.networking.k8s.io/v1) the environment's traffic enters through: "
        "each model gets an HTTPRoute on it, and a canary's share is set exactly by the route's weights. Its "
        "listeners must allow routes from the serving namespace, and the cluster must have the Gateway API "
        "CRDs. Empty: one Service per model, and a canary's share follows its number of pods (approximate "
        "with few replicas).",
    )
    gateway_namespace = models.CharField(
        max_length=63, blank=True, help_text="The Gateway's namespace. Empty: the serving namespace."
    )
    image = models.CharField(
        max_length=300, default="tensorflow/serving:2.19.0", help_text="A pinned TF Serving image; 'latest' is refused."
    )
    fetcher_image = models.CharField(
        max_length=300,
        blank=True,
        help_text="Image of the init container that downloads the model from MLflow. "
        "Empty: the MODELGATE_FETCHER_IMAGE setting.",
    )
    replicas = models.PositiveSmallIntegerField(default=1)
    cpu_request = models.CharField(max_length=20, default="250m")
    cpu_limit = models.CharField(max_length=20, default="1")
    memory_request = models.CharField(max_length=20, default="512Mi")
    memory_limit = models.CharField(max_length=20, default="1Gi")
    autoscale_min = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Set both to add an HPA.")
    autoscale_max = models.PositiveSmallIntegerField(null=True, blank=True)
    autoscale_cpu_percent = models.PositiveSmallIntegerField(default=70)
    node_selector = models.JSONField(default=dict, blank=True)
    tolerations = models.JSONField(default=list, blank=True)
    extra_labels = models.JSONField(default=dict, blank=True)
    RESTRICTED, BASELINE, PRIVILEGED = "restricted", "baseline", "privileged"
    POD_SECURITY_LEVELS = [(RESTRICTED, "restricted"), (BASELINE, "baseline"), (PRIVILEGED, "privileged")]
    pod_security_level = models.CharField(
        max_length=20,
        choices=POD_SECURITY_LEVELS,
        default=RESTRICTED,
        help_text="The Pod Security Standard the namespace enforces (its pod-security.kubernetes.io/enforce "
        "label). restricted and baseline: pods run as a non-root user with no privileges, capabilities "
        "or writable root filesystem. privileged: the image's defaults (e.g. an image that must run as "
        "root).",
    )
    startup_seconds = models.PositiveIntegerField(default=600, help_text="How long a model may take to load.")
    progress_deadline_seconds = models.PositiveIntegerField(default=600)
    rollout_timeout_seconds = models.PositiveIntegerField(default=900)
    # The guard after a rollout: for guard_minutes after a version goes live, an error rate or
    # p95 latency above these (when set) rolls it back automatically.
    guard_error_rate = models.FloatField(null=True, blank=True, help_text="e.g. 0.05 for 5 % of requests.")
    guard_p95_ms = models.FloatField(null=True, blank=True)
    guard_minutes = models.PositiveSmallIntegerField(default=10)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.environment.name} ({self.backend})"

    def clean(self):
        """What the admin form refuses before anything is rendered or applied."""
        errors = {}
        tag = self.image.rsplit("/", 1)[-1]
        if "@" not in self.image and (":" not in tag or tag.endswith(":latest")):
            errors["image"] = "Pin a version, e.g. tensorflow/serving:2.19.0 ('latest' or no tag is refused)."
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", self.namespace or ""):
            errors["namespace"] = "A Kubernetes namespace: lowercase letters, digits and '-', at most 63."
        problem = self.external_base_url and base_url_problem(self.external_base_url)
        if problem:
            errors["external_base_url"] = problem
        if (self.autoscale_min is None) != (self.autoscale_max is None):
            errors["autoscale_max"] = "Set both autoscale_min and autoscale_max, or neither."
        elif self.autoscale_min and self.autoscale_max and self.autoscale_min > self.autoscale_max:
            errors["autoscale_max"] = "Must be at least autoscale_min."
        for name in ("gateway_name", "gateway_namespace"):
            if getattr(self, name) and not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", getattr(self, name)):
                errors[name] = "A Kubernetes name: lowercase letters, digits and '-', at most 63."
        if self.gateway_namespace and not self.gateway_name:
            errors["gateway_name"] = "Name the Gateway too, or clear its namespace."
        if self.backend == self.KUBERNETES and self.in_cluster and self.kubeconfig_path:
            errors["kubeconfig_path"] = "Leave empty with in-cluster configuration."
        if errors:
            raise ValidationError(errors)


class DeploymentState(BadgeChoices):
    NEW = "new", "muted", "Not serving yet"
    SERVING = "serving", "ok", "Serving"
    UNDEPLOYED = "undeployed", "muted", "Undeployed"


class DriftState(BadgeChoices):
    UNKNOWN = "unknown", "muted", "Not checked"
    IN_SYNC = "in_sync", "ok", "In sync"
    OUT_OF_SYNC = "out_of_sync", "warning", "Out of sync"


class Health(BadgeChoices):
    """The dashboard's one word per deployment (``Deployment.health``)."""

    OK = "ok", "ok", "healthy"
    WARN = "warn", "warning", "degraded"
    BAD = "bad", "error", "failing"
    IDLE = "idle", "muted", "idle"


class PodReadiness(BadgeChoices):
    """A replica as the health panel lists it (``pod.ready`` from the backend)."""

    READY = "ready", "ok", "ready"
    NOT_READY = "not_ready", "error", "not ready"


# Health thresholds on the share of failed requests.
HEALTH_BAD_ERROR_RATE, HEALTH_WARN_ERROR_RATE = 0.05, 0.01


class Deployment(models.Model):
    """One model served in one environment: the stable thing its rollouts replace."""

    NEW, SERVING, UNDEPLOYED = DeploymentState.NEW, DeploymentState.SERVING, DeploymentState.UNDEPLOYED
    STATES = DeploymentState.choices
    UNKNOWN, IN_SYNC, OUT_OF_SYNC = DriftState.UNKNOWN, DriftState.IN_SYNC, DriftState.OUT_OF_SYNC
    DRIFT_STATES = DriftState.choices

    target = models.ForeignKey(DeploymentTarget, on_delete=models.PROTECT, related_name="deployments")
    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="deployments")
    name = models.CharField(max_length=63)
    state = models.CharField(max_length=20, choices=STATES, default=NEW)
    # The revision that serves now: the last rollout that went live. Rollbacks re-apply it.
    live_rollout = models.ForeignKey("Rollout", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    drift_state = models.CharField(max_length=20, choices=DRIFT_STATES, default=UNKNOWN)
    drift_diff = models.JSONField(default=list, blank=True)
    drift_checked_at = models.DateTimeField(null=True, blank=True)
    # The local backend's model server listens here; kept so clients have a stable address.
    local_port = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Not a column: the rollout running or queued now, set by the API's views for its serializer.
    active: "Rollout | None"

    class Meta:
        ordering = ["model__name", "target__environment__position"]
        constraints = [models.UniqueConstraint(fields=["target", "model"], name="one_deployment_per_model_target")]
        permissions = [
            ("operate_deployment", "Can redeploy, re-apply and undeploy deployments"),
            ("break_glass_deployment", "Can stop a deployment at once in an emergency (break-glass)"),
        ]

    def __str__(self):
        return f"{self.model.name} in {self.target.environment.name}"

    @property
    def environment(self) -> Environment:
        return self.target.environment

    @property
    def drift_title(self) -> str:
        """The drift badge's tooltip: what out of sync means here."""
        if self.drift_state != self.OUT_OF_SYNC or self.live_rollout is None:
            return ""
        return f"What runs differs from what revision {self.live_rollout.revision} applied"

    @property
    def is_serving(self) -> bool:
        """A revision serves now: what redeploy, undeploy and the break-glass stop act on."""
        return self.state == self.SERVING and self.live_rollout_id is not None

    def rollback_refusal(self, rollout: "Rollout") -> str | None:
        """Why ``rollout`` cannot be asked for again, or None: only an earlier good revision
        of another version than the one serving can (``services.rollback_request``)."""
        if rollout.state not in Rollout.GOOD or rollout.version_id is None:
            return f"Revision {rollout.revision} never went live; only a good revision can be rolled back to."
        live = self.live_rollout
        if live is not None and live.version_id == rollout.version_id:
            assert rollout.version is not None  # its version_id was checked above
            return f"v{rollout.version.version} already serves."
        return None

    def health_for(self, metrics: dict) -> Health:
        """The dashboard's one word for ``metrics`` (``metrics.series.summary``): idle when not
        serving or nothing is measured; bad with no ready replica or 5 % errors; warn when out
        of sync, at 1 % errors or short of replicas."""
        if self.state != self.SERVING:
            return Health.IDLE
        ready, desired, errors = metrics["replicas_ready"], metrics["replicas_desired"], metrics["error_rate"]
        if ready == 0 or (errors or 0) >= HEALTH_BAD_ERROR_RATE:
            return Health.BAD
        if (
            self.drift_state == self.OUT_OF_SYNC
            or (errors or 0) >= HEALTH_WARN_ERROR_RATE
            or (ready is not None and desired is not None and ready < desired)
        ):
            return Health.WARN
        return Health.OK if ready is not None else Health.IDLE


class RolloutState(BadgeChoices):
    QUEUED = "queued", "warning", "Queued"
    RUNNING = "running", "blue", "Running"
    LIVE = "live", "ok", "Live"
    ROLLED_BACK = "rolled_back", "error", "Rolled back"
    FAILED = "failed", "error", "Failed"
    DONE = "done", "ok", "Done"


class StepState(BadgeChoices):
    """A pipeline step's state, kept in ``Rollout.steps`` (deployer.pipeline)."""

    PENDING = "pending", "muted", "pending"
    RUNNING = "running", "blue", "running"
    DONE = "done", "ok", "done"
    FAILED = "failed", "error", "failed"
    SKIPPED = "skipped", "muted", "skipped"


class RolloutStrategy(BadgeChoices):
    """How a rollout brings its version in: all at once, or a canary (``Rollout.canary``)."""

    ALL_AT_ONCE = "all_at_once", "muted", "All at once"
    CANARY = "canary", "blue", "Canary"


class CanaryVerdict(BadgeChoices):
    """A canary step's verdict (``Rollout.canary["verdicts"][i]["result"]``)."""

    PASS = "pass", "ok", "passed"
    FAIL = "fail", "error", "failed"
    INCONCLUSIVE = "inconclusive", "warning", "inconclusive"


class Rollout(models.Model):
    DEPLOY, ROLLBACK, REDEPLOY, UNDEPLOY = "deploy", "rollback", "redeploy", "undeploy"
    AUTO_ROLLBACK = "auto_rollback"
    KINDS = [
        (DEPLOY, "Deploy"),
        (ROLLBACK, "Rollback"),
        (REDEPLOY, "Redeploy"),
        (UNDEPLOY, "Undeploy"),
        (AUTO_ROLLBACK, "Automatic rollback (guard)"),
    ]
    QUEUED, RUNNING, LIVE = RolloutState.QUEUED, RolloutState.RUNNING, RolloutState.LIVE
    ROLLED_BACK, FAILED, DONE = RolloutState.ROLLED_BACK, RolloutState.FAILED, RolloutState.DONE
    STATES = RolloutState.choices
    ACTIVE = (QUEUED, RUNNING)
    GOOD = (LIVE,)

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="rollouts")
    revision = models.PositiveIntegerField()
    kind = models.CharField(max_length=20, choices=KINDS, default=DEPLOY)
    version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="rollouts")
    request = models.ForeignKey(
        PromotionRequest, null=True, blank=True, on_delete=models.SET_NULL, related_name="rollouts"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    state = models.CharField(max_length=20, choices=STATES, default=QUEUED)
    reason = models.TextField(blank=True)
    # What was (or will be) applied: the rendered objects, kept so a rollback re-applies
    # exactly this revision and drift is judged against it.
    manifests = models.JSONField(default=list)
    # [{"name", "state", "started_at", "finished_at", "detail"}], in pipeline order.
    steps = models.JSONField(default=list)
    # The revision that served when this one started: what a failure restores.
    restore_to = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    attempts = models.PositiveSmallIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The post-rollout guard: watching until guard_until; "passed" or "breached" after.
    guard_until = models.DateTimeField(null=True, blank=True)
    guard_state = models.CharField(max_length=20, blank=True)
    # An automatic rollback names the rollout whose guard it answered.
    rolls_back = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    strategy = models.CharField(max_length=20, choices=RolloutStrategy.choices, default=RolloutStrategy.ALL_AT_ONCE)
    # A canary's state, written by the pipeline (and ``decision`` by the operator's services):
    # {"plan": {steps, analysis}, "step": i, "weight": w, "objects": [...], "step_started_at",
    #  "hold_until", "check_at", "waiting": {...} | None, "verdicts": [{"step", "weight",
    #  "result", "passed", "reason", "numbers", "window_start", "window_end", "at"}],
    #  "decision": {"action": "promote" | "abort", "actor", "at", "reason"} | None}
    canary = models.JSONField(default=dict, blank=True)
    # Set only while a canary waits between checks with no worker holding it: when the
    # controller (``deployer.reconcile_canaries``) queues it again. The rollout stays running.
    next_check_at = models.DateTimeField(null=True, blank=True)
    # Not a column: whether the deployment page offers a rollback to this revision (views).
    can_roll_back_to: bool

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["deployment", "revision"], name="one_revision_number_per_deployment"),
            # One rollout at a time per deployment: a second one waits queued.
            models.UniqueConstraint(
                fields=["deployment"], condition=Q(state="running"), name="one_running_rollout_per_deployment"
            ),
            models.UniqueConstraint(
                fields=["request"], condition=Q(request__isnull=False), name="one_deploy_rollout_per_request"
            ),
        ]
        indexes = [
            models.Index(fields=["state", "heartbeat_at"], name="rollout_state_idx"),
            models.Index(fields=["state", "next_check_at"], name="rollout_check_idx"),
        ]

    def __str__(self):
        return f"revision {self.revision} of {self.deployment}"

    @property
    def is_canary(self) -> bool:
        return self.strategy == RolloutStrategy.CANARY

    @property
    def canary_promoting(self) -> bool:
        """The canary's steps are over (passed or skipped): the version is being made stable."""
        return any(s["name"] == "promote_apply" and s["state"] != "pending" for s in self.steps)

    def canary_refusal(self) -> str | None:
        """Why an operator can no longer promote this canary early or abort it, or None
        (``services.canary_promote_now`` and ``canary_abort`` refuse exactly these)."""
        if not self.is_canary:
            return f"Revision {self.revision} is not a canary; it goes out all at once."
        if not self.is_active:
            return f"Revision {self.revision} is {self.get_state_display().lower()}; its canary is over."
        decision = self.canary.get("decision")
        if decision:
            done = "promoted early" if decision["action"] == "promote" else "aborted"
            return f"Revision {self.revision} was already {done} by {decision['actor']}."
        if self.canary_promoting or any(s["name"] == "restore_canary_end" for s in self.steps):
            return f"Revision {self.revision} has left its canary steps; it can no longer be promoted early or aborted."
        return None

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None


class MetricPoint(models.Model):
    """One interval of one deployment's traffic, from TF Serving's Prometheus counters.

    Two resolutions: 10-second points kept for 6 hours and 1-minute points kept for 7 days
    (deployer.metrics.retention). Latency is kept as histogram bucket counts for the
    interval, not only as percentiles, so coarser points are exact sums of finer ones and
    their percentiles are computed from the summed buckets, never averaged.
    """

    STABLE, CANARY = "stable", "canary"
    TRACKS = [(STABLE, "stable"), (CANARY, "canary")]

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="metric_points")
    resolution = models.PositiveSmallIntegerField()  # seconds
    at = models.DateTimeField()  # start of the interval, aligned to the resolution
    # The version serving during the interval (None when it changed within it).
    version = models.PositiveIntegerField(null=True, blank=True)
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    # {"<upper bound in µs>": count in this interval, ..., "+Inf": n}: per bucket, not cumulative.
    latency_buckets = models.JSONField(default=dict)
    latency_sum_us = models.FloatField(default=0)
    p50_ms = models.FloatField(null=True, blank=True)
    p95_ms = models.FloatField(null=True, blank=True)
    p99_ms = models.FloatField(null=True, blank=True)
    replicas_desired = models.PositiveSmallIntegerField(null=True, blank=True)
    replicas_ready = models.PositiveSmallIntegerField(null=True, blank=True)
    # Which replicas served it: during a canary release the canary's replicas have points of
    # their own beside the stable ones' (TF Serving's metrics carry no version label, so the
    # replicas tell the tracks apart). The deployment's traffic is the sum of its tracks.
    track = models.CharField(max_length=10, choices=TRACKS, default=STABLE)

    class Meta:
        ordering = ["at"]
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "resolution", "at", "track"], name="one_point_per_interval_and_track"
            )
        ]
        indexes = [models.Index(fields=["resolution", "at"], name="metric_retention_idx")]


class ScrapeState(models.Model):
    """The raw counters last read from one replica, so the next scrape can take deltas
    (and notice a counter reset when the replica restarted)."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="scrape_states")
    replica = models.CharField(max_length=253)
    scraped_at = models.DateTimeField()
    counters = models.JSONField(default=dict)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["deployment", "replica"], name="one_state_per_replica")]
