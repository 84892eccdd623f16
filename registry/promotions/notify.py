"""Who hears of a promotion event: email to the requester and the approver group, and the
environment's outbound webhook. Delivery rows are written in the caller's transaction;
the sending happens in Celery tasks queued on commit."""

from celery import current_app

from console.transactions import on_commit_safely

from .models import PromotionRequest, WebhookDelivery
from .webhooks import payload_for

# The tasks that send (tasks.py) are queued by name: tasks.py calls the services, which call
# this module, so importing the tasks here would close a cycle.
SEND_EMAIL = "promotions.send_email"
SEND_APPROVER_EMAIL = "promotions.send_approver_email"
DELIVER_WEBHOOK = "promotions.deliver_webhook"


def _queue_on_commit(task: str, *args, what: str) -> None:
    # A signature runs the task in this process where Celery is eager (the tests), and
    # otherwise sends it to the broker like send_task.
    on_commit_safely(lambda: current_app.signature(task, args=args).delay(), what=what)


# Events about a request's deployment rather than its state: the email's subject names them.
CANARY_EVENTS = {
    "canary.step_passed": "canary step passed",
    "canary.aborted": "canary aborted",
    "canary.completed": "canary completed",
}


def on_commit(request_id: int, event: str, *, extra: dict | None = None, detail: str = "") -> None:
    """The requester's email and the environment's webhook for ``event``. ``extra`` is added
    to the webhook's JSON (a canary's step and numbers), ``detail`` to the email's body."""
    req = PromotionRequest.objects.select_related("environment", "model", "version", "requested_by").get(pk=request_id)
    delivery = None
    if req.environment.webhook_url:
        delivery = WebhookDelivery.objects.create(
            environment=req.environment,
            event=event,
            url=req.environment.webhook_url,
            payload={**payload_for(req, event), **(extra or {})},
        )
    args = (request_id, event, detail) if detail else (request_id, event)
    _queue_on_commit(SEND_EMAIL, *args, what=f"E-mail for {event} #{request_id}")
    if delivery is not None:
        _queue_on_commit(DELIVER_WEBHOOK, delivery.pk, what=f"Webhook delivery {delivery.pk}")


def email_on_commit(request_id: int, event: str) -> None:
    """Only the email to the request's requester (e.g. their request was superseded)."""
    _queue_on_commit(SEND_EMAIL, request_id, event, what=f"E-mail for {event} #{request_id}")


def approvers_on_commit(environment, event: str, payload: dict, subject: str, body: str) -> None:
    """An event about the environment itself (a break-glass stop): email to its approver
    group and its webhook, like a promotion event."""
    delivery = None
    if environment.webhook_url:
        delivery = WebhookDelivery.objects.create(
            environment=environment, event=event, url=environment.webhook_url, payload={"event": event, **payload}
        )
    environment_id = environment.pk
    _queue_on_commit(
        SEND_APPROVER_EMAIL, environment_id, subject, body, what=f"Approver e-mail for environment {environment_id}"
    )
    if delivery is not None:
        _queue_on_commit(DELIVER_WEBHOOK, delivery.pk, what=f"Webhook delivery {delivery.pk}")
