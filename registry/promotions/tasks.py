import logging

from celery import shared_task
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail

from .webhooks import webhook_attempt

log = logging.getLogger(__name__)


@shared_task(
    bind=True, name="promotions.deliver_webhook", max_retries=6, acks_late=True, soft_time_limit=60, time_limit=90
)
def deliver_webhook(self, delivery_id: int):
    """One attempt per run; failures retry with exponential backoff (5 s … 160 s)."""
    outcome = webhook_attempt(delivery_id, final=self.request.retries >= self.max_retries)
    if outcome == "retry":
        raise self.retry(countdown=5 * 2**self.request.retries)
    return outcome


@shared_task(name="promotions.send_email", autoretry_for=(OSError,), retry_backoff=True, max_retries=3)
def send_promotion_email(request_id: int, event: str):
    from .models import PromotionRequest
    from .selectors import approver_group

    req = (
        PromotionRequest.objects.select_related("environment", "model", "version", "requested_by")
        .filter(pk=request_id)
        .first()
    )
    if req is None:
        return
    if event == "promotion.requested":
        group = approver_group(req.environment)
        users = (
            get_user_model().objects.filter(groups=group, is_active=True).exclude(pk=req.requested_by_id)
            if group
            else []
        )
        recipients = sorted({u.email for u in users if u.email})
    else:
        recipients = [req.requested_by.email] if req.requested_by.email else []
    if not recipients:
        return
    url = f"{settings.MODELGATE_URL.rstrip('/')}/promotions/{req.pk}/"
    what = "" if req.kind == req.PROMOTE else f"{req.get_kind_display().lower()}: "
    subject = (
        f"[Modelgate] {what}{req.model.name} v{req.version.version} → {req.environment.name}: "
        f"{req.get_state_display().lower()}"
    )
    body = (
        f"{event.replace('promotion.', 'Promotion ')} — request #{req.pk} by {req.requested_by}.\n\n"
        f"Justification: {req.justification}\n{req.state_reason}\n\nOpen it: {url}\n"
    )
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)


@shared_task(name="promotions.send_approver_email", autoretry_for=(OSError,), retry_backoff=True, max_retries=3)
def send_approver_email(environment_id: int, subject: str, body: str):
    from .models import Environment
    from .selectors import approver_group

    environment = Environment.objects.select_related("approver_group").filter(pk=environment_id).first()
    group = approver_group(environment) if environment else None
    if group is None:
        return
    recipients = sorted(
        set(
            get_user_model()
            .objects.filter(groups=group, is_active=True)
            .exclude(email="")
            .values_list("email", flat=True)
        )
    )
    if recipients:
        send_mail(f"[Modelgate] {subject}", body, settings.DEFAULT_FROM_EMAIL, recipients)


@shared_task(name="promotions.expire_requests")
def expire_requests():
    from .services import promotions_expire

    return promotions_expire()
