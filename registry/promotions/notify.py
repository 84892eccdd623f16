"""Who hears of a promotion event: email to the requester and the approver group, and the
environment's outbound webhook. Delivery rows are written in the caller's transaction;
the sending happens in Celery tasks queued on commit."""

from console.transactions import on_commit_safely

EVENTS = (
    "promotion.requested",
    "promotion.approved",
    "promotion.rejected",
    "promotion.cancelled",
    "promotion.expired",
    "promotion.live",
    "promotion.failed",
    "promotion.rolled_back",
    "promotion.done",
    "promotion.superseded",
    "deployment.break_glass_stop",
)


def on_commit(request_id: int, event: str) -> None:
    from .models import PromotionRequest, WebhookDelivery
    from .tasks import deliver_webhook, send_promotion_email
    from .webhooks import payload_for

    req = PromotionRequest.objects.select_related("environment", "model", "version", "requested_by").get(pk=request_id)
    delivery = None
    if req.environment.webhook_url:
        delivery = WebhookDelivery.objects.create(
            environment=req.environment, event=event, url=req.environment.webhook_url, payload=payload_for(req, event)
        )
    on_commit_safely(lambda: send_promotion_email.delay(request_id, event), what=f"E-mail for {event} #{request_id}")
    if delivery is not None:
        on_commit_safely(lambda: deliver_webhook.delay(delivery.pk), what=f"Webhook delivery {delivery.pk}")


def email_on_commit(request_id: int, event: str) -> None:
    """Only the email to the request's requester (e.g. their request was superseded)."""
    from .tasks import send_promotion_email

    on_commit_safely(lambda: send_promotion_email.delay(request_id, event), what=f"E-mail for {event} #{request_id}")


def approvers_on_commit(environment, event: str, payload: dict, subject: str, body: str) -> None:
    """An event about the environment itself (a break-glass stop): email to its approver
    group and its webhook, like a promotion event."""
    from .models import WebhookDelivery
    from .tasks import deliver_webhook, send_approver_email

    delivery = None
    if environment.webhook_url:
        delivery = WebhookDelivery.objects.create(
            environment=environment, event=event, url=environment.webhook_url, payload={"event": event, **payload}
        )
    environment_id = environment.pk
    on_commit_safely(
        lambda: send_approver_email.delay(environment_id, subject, body),
        what=f"Approver e-mail for environment {environment_id}",
    )
    if delivery is not None:
        on_commit_safely(lambda: deliver_webhook.delay(delivery.pk), what=f"Webhook delivery {delivery.pk}")
