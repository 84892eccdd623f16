from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from console.errors import ServiceError

from . import services
from .models import Environment, PolicyChange, PromotionRequest, WebhookDelivery


class EnvironmentAdminForm(forms.ModelForm):
    webhook_url = forms.URLField(label="Webhook URL", required=False, max_length=200, assume_scheme="https")

    class Meta:
        model = Environment
        exclude = ("webhook_secret",)  # noqa: DJ006 - every field but the secret, which has its own write-only field

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("protected") and cleaned.get("allow_self_approval"):
            raise ValidationError({"allow_self_approval": "A protected environment cannot allow self-approval."})
        return cleaned


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    """Saves go through services.environment_save like the settings page; on a protected
    environment the policy fields are read-only here (change them on the settings page,
    where a second admin confirms)."""

    form = EnvironmentAdminForm
    list_display = (
        "name",
        "position",
        "alias",
        "protected",
        "required_approvals",
        "approver_group",
        "require_previous",
    )
    # The secret is write-only: never rendered back.
    exclude = ("webhook_secret",)

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.protected:
            return Environment.POLICY_FIELDS
        return ()

    def save_model(self, request, obj, form, change):
        try:
            services.environment_save(actor=request.user, environment=obj, metric_thresholds=obj.metric_thresholds)
        except ServiceError as exc:
            # The form checked the same rules; this is a race with another save.
            raise ValidationError(exc.message) from exc


@admin.register(PolicyChange)
class PolicyChangeAdmin(admin.ModelAdmin):
    list_display = ("id", "environment", "state", "proposed_by", "decided_by", "created_at")
    list_filter = ("state", "environment")
    readonly_fields = [f.name for f in PolicyChange._meta.fields]

    def has_add_permission(self, request):
        return False  # proposed and confirmed through the environment's page or API

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PromotionRequest)
class PromotionRequestAdmin(admin.ModelAdmin):
    list_display = ("id", "model", "version", "environment", "state", "requested_by", "created_at")
    list_filter = ("state", "environment")
    readonly_fields = [f.name for f in PromotionRequest._meta.fields]

    def has_add_permission(self, request):
        return False  # requests go through the workflow, never a raw save

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("created_at", "environment", "event", "state", "attempts", "last_status", "last_error")
    list_filter = ("state", "environment", "event")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
