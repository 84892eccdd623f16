"""The mirror of MLflow's model registry.

MLflow is the source of truth. These rows are an indexed copy, written by the
service functions right after MLflow accepted a change and repaired by the
sync, so list pages and search never wait on MLflow.
"""

from django.conf import settings
from django.db import models

from console.choices import BadgeChoices


class RegisteredModel(models.Model):
    name = models.CharField(max_length=256, unique=True)
    description = models.TextField(blank=True)
    tags = models.JSONField(default=dict, blank=True)
    # {"alias": version_number}: MLflow keeps aliases on the model.
    aliases = models.JSONField(default=dict, blank=True)
    # Denormalised for the list page, so it needs no per-row queries.
    latest_version = models.PositiveIntegerField(null=True, blank=True)
    version_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField(db_index=True)
    synced_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name"]
        permissions = [("sync_registry", "Can reconcile the mirror with MLflow on demand")]

    def __str__(self):
        return self.name


class VersionStatus(BadgeChoices):
    """MLflow's model version status."""

    READY = "READY", "ok", "Ready"
    PENDING = "PENDING_REGISTRATION", "warning", "Pending registration"
    FAILED = "FAILED_REGISTRATION", "error", "Failed registration"


class ConversionState(BadgeChoices):
    """Converting a Keras archive to a SavedModel (registry.convert_keras_version)."""

    QUEUED = "queued", "warning", "Queued"
    RUNNING = "running", "blue", "Converting"
    DONE = "done", "ok", "Converted"
    FAILED = "failed", "error", "Conversion failed"


class Servability(BadgeChoices):
    """Whether TF Serving can serve a version (``ModelVersion.servability``)."""

    READY = "ready", "ok", "TF Serving ready"
    NOT_SERVABLE = "not_servable", "muted", "not servable"


class RunStatus(BadgeChoices):
    """MLflow's run status, as the version page shows the training run."""

    RUNNING = "RUNNING", "warning", "RUNNING"
    SCHEDULED = "SCHEDULED", "warning", "SCHEDULED"
    FINISHED = "FINISHED", "ok", "FINISHED"
    FAILED = "FAILED", "error", "FAILED"
    KILLED = "KILLED", "error", "KILLED"


class ModelVersion(models.Model):
    READY, PENDING, FAILED = VersionStatus.READY, VersionStatus.PENDING, VersionStatus.FAILED
    STATUS_CHOICES = VersionStatus.choices

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    description = models.TextField(blank=True)
    tags = models.JSONField(default=dict, blank=True)
    aliases = models.JSONField(default=list, blank=True)
    source = models.CharField(max_length=1000)
    run_id = models.CharField(max_length=64, blank=True, db_index=True)
    status = models.CharField(max_length=32, choices=STATUS_CHOICES, default=READY)
    status_message = models.TextField(blank=True)
    # Who registered it: the Modelgate user, or MLflow's user_id for versions made elsewhere.
    creator = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(db_index=True)
    updated_at = models.DateTimeField()
    synced_at = models.DateTimeField(auto_now=True)

    # What inspecting the version's MLmodel file (and SavedModel) found.
    flavors = models.JSONField(default=list, blank=True)
    signature = models.JSONField(null=True, blank=True)
    savedmodel_path = models.CharField(max_length=500, blank=True)
    servable = models.BooleanField(default=False)
    serving_note = models.CharField(max_length=500, blank=True)
    inspected_at = models.DateTimeField(null=True, blank=True)
    # A Keras 3 .keras archive among the artifacts (relative path), which can be converted.
    keras_archive_path = models.CharField(max_length=500, blank=True)

    # Converting that archive to a SavedModel (registry.convert_keras_version): the job's state.
    CONVERSION_QUEUED, CONVERSION_RUNNING = ConversionState.QUEUED, ConversionState.RUNNING
    CONVERSION_DONE, CONVERSION_FAILED = ConversionState.DONE, ConversionState.FAILED
    CONVERSION_CHOICES = ConversionState.choices
    conversion_state = models.CharField(max_length=16, choices=CONVERSION_CHOICES, blank=True)
    conversion_detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["model", "-version"]
        constraints = [models.UniqueConstraint(fields=["model", "version"], name="unique_model_version")]
        indexes = [
            models.Index(fields=["model", "-version"], name="version_model_idx"),
            models.Index(fields=["-updated_at", "-id"], name="version_updated_idx"),
            models.Index(fields=["status"], name="version_status_idx"),
        ]

    def __str__(self):
        return f"{self.model.name} v{self.version}"

    @property
    def servability(self) -> Servability:
        return Servability.READY if self.servable else Servability.NOT_SERVABLE

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model.name}/{self.version}"


class IdempotencyKey(models.Model):
    """The first answer to a registration sent with an Idempotency-Key header.

    The row is inserted before MLflow is called, so the unique constraint is the
    claim: a concurrent duplicate sees it and waits instead of registering twice.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    scope = models.CharField(max_length=300)
    request_digest = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="unique_idempotency_key")]


class SyncState(models.Model):
    """The registry sync as a row the UI reads: when it last ran, what it changed, or why it failed."""

    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    ok = models.BooleanField(default=True)
    message = models.TextField(blank=True)
    counts = models.JSONField(default=dict)
