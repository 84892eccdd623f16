from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from console.errors import ServiceError

from . import canary_plan, services
from .models import Environment, PolicyChange, PromotionRequest, RolloutStrategy, WebhookDelivery


class EnvironmentAdminForm(forms.ModelForm):
    webhook_url = forms.URLField(label="Webhook URL", required=False, max_length=200, assume_scheme="https")
    # Not required: a post without it keeps the strategy (the field is read-only when protected).
    rollout_strategy = forms.ChoiceField(choices=RolloutStrategy.choices, required=False)
    canary_plan = forms.JSONField(
        required=False,
        help_text='JSON, e.g. {"steps": [{"weight": 10, "seconds": 300}, {"weight": 50, "seconds": 600}], '
        '"analysis": {"min_requests": 100, "max_error_rate_increase_pp": 1.0, "max_p95_ratio": 1.5}}. '
        "Empty: no plan. A canary strategy needs one.",
    )

    class Meta:
        model = Environment
        exclude = ("webhook_secret",)  # noqa: DJ006 - every field but the secret, which has its own write-only field

    def clean_rollout_strategy(self):
        return self.cleaned_data.get("rollout_strategy") or self.instance.rollout_strategy

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("protected") and cleaned.get("allow_self_approval"):
            raise ValidationError({"allow_self_approval": "A protected environment cannot allow self-approval."})
        if "rollout_strategy" in cleaned and "canary_plan" in self.fields and "canary_plan" not in self.errors:
            try:
                cleaned["canary_plan"] = canary_plan.clean_policy(cleaned["rollout_strategy"], cleaned["canary_plan"])
            except canary_plan.PlanError as exc:
                self.add_error("canary_plan", str(exc))
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
        "rollout_strategy",
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
