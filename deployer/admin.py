from django.contrib import admin
from django.db import transaction

from console.audit.services import audit_record

from .models import Deployment, DeploymentTarget, Rollout


def _plain(value):
    """A form value as JSON can hold it (the environment as its name)."""
    return value if isinstance(value, str | int | float | bool | list | dict | type(None)) else str(value)


@admin.register(DeploymentTarget)
class DeploymentTargetAdmin(admin.ModelAdmin):
    list_display = ("environment", "backend", "namespace", "pod_security_level", "image", "replicas", "kube_context")
    fieldsets = [
        (None, {"fields": ["environment", "backend"]}),
        (
            "Kubernetes connection (credentials are read from the file at run time, never stored)",
            {"fields": ["in_cluster", "kubeconfig_path", "kube_context", "namespace", "pod_security_level"]},
        ),
        ("Clients", {"fields": ["external_base_url"]}),
        ("Traffic (canary weights)", {"fields": ["gateway_name", "gateway_namespace"]}),
        (
            "Pods",
            {
                "fields": [
                    "image",
                    "fetcher_image",
                    "replicas",
                    "cpu_request",
                    "cpu_limit",
                    "memory_request",
                    "memory_limit",
                    "node_selector",
                    "tolerations",
                    "extra_labels",
                ]
            },
        ),
        ("Autoscaling", {"fields": ["autoscale_min", "autoscale_max", "autoscale_cpu_percent"]}),
        ("Timing", {"fields": ["startup_seconds", "progress_deadline_seconds", "rollout_timeout_seconds"]}),
        ("Guard after a rollout (empty: off)", {"fields": ["guard_error_rate", "guard_p95_ms", "guard_minutes"]}),
    ]

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            audit_record(
                actor=request.user,
                verb="target.saved",
                obj=obj,
                after={k: _plain(form.cleaned_data[k]) for k in form.changed_data},
            )


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ("model", "target", "state", "drift_state", "live_rollout")
    readonly_fields = [f.name for f in Deployment._meta.fields]

    def has_add_permission(self, request):
        return False  # deployments come from rollouts

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Rollout)
class RolloutAdmin(admin.ModelAdmin):
    list_display = ("id", "deployment", "revision", "kind", "version", "state", "created_at")
    list_filter = ("state", "kind")
    readonly_fields = [f.name for f in Rollout._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
