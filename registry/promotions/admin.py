from django.contrib import admin

from .models import Environment, PromotionRequest, WebhookDelivery


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ("name", "position", "alias", "required_approvals", "approver_group", "require_previous")
    # The secret is write-only: never rendered back.
    exclude = ("webhook_secret",)


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
