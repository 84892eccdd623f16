import logging

from celery import shared_task
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail

from . import notify
from .models import Environment, PromotionRequest
from .selectors import approver_group
from .services import promotions_expire
from .webhooks import DeliveryRefused, webhook_attempt

log = logging.getLogger(__name__)


@shared_task(
    bind=True,
    name=notify.DELIVER_WEBHOOK,
    # One attempt per run; a refused delivery is tried again after Celery's exponential
    # backoff (at most 5 s, 10 s, … 160 s, jittered so receivers back from an outage are not
    # hit by every delivery at once). The last attempt marks the delivery failed instead.
    autoretry_for=(DeliveryRefused,),
    retry_backoff=5,
    retry_backoff_max=160,
    retry_jitter=True,
    max_retries=6,
    acks_late=True,
    soft_time_limit=60,
    time_limit=90,
)
def deliver_webhook(self, delivery_id: int):
    return webhook_attempt(delivery_id, final=self.request.retries >= self.max_retries)


# SMTP errors are OSErrors: a mail server that is down or refuses for now.
@shared_task(name=notify.SEND_EMAIL, autoretry_for=(OSError,), retry_backoff=True, retry_jitter=True, max_retries=3)
def send_promotion_email(request_id: int, event: str, detail: str = ""):
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
    happened = notify.CANARY_EVENTS.get(event)
    subject = (
        f"[Modelgate] {what}{req.model.name} v{req.version.version} → {req.environment.name}: "
        f"{happened or req.get_state_display().lower()}"
    )
    heading = happened.capitalize() if happened else event.replace("promotion.", "Promotion ")
    body = (
        f"{heading} — request #{req.pk} by {req.requested_by}.\n\n"
        + (f"{detail}\n\n" if detail else "")
        + f"Justification: {req.justification}\n{req.state_reason}\n\nOpen it: {url}\n"
    )
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)


@shared_task(
    name=notify.SEND_APPROVER_EMAIL, autoretry_for=(OSError,), retry_backoff=True, retry_jitter=True, max_retries=3
)
def send_approver_email(environment_id: int, subject: str, body: str):
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
    return promotions_expire()
