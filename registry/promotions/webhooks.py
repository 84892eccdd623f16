"""Outbound webhooks: HMAC-SHA256-signed JSON with a timestamp and a delivery id.

A receiver verifies ``X-Modelgate-Signature: t=<unix time>,v1=<hex>`` by computing
HMAC-SHA256(secret, "<t>.<raw body>") and rejecting old timestamps (replays).
"""

import hashlib
import hmac
import json
import time

import requests
from django.conf import settings
from django.utils import timezone

from .models import WebhookDelivery

TIMEOUT = 10


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, *, tolerance: int = 300, now: float | None = None) -> bool:
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def payload_for(req, event: str) -> dict:
    return {
        "event": event,
        "request": {
            "id": req.pk, "state": req.state, "state_reason": req.state_reason,
            "model": req.model.name, "version": req.version.version, "environment": req.environment.name,
            "requested_by": req.requested_by.get_username(), "justification": req.justification,
            "url": f"{settings.MODELGATE_URL.rstrip('/')}/promotions/{req.pk}/",
        },
    }


def webhook_attempt(delivery_id: int, *, final: bool) -> str:
    """POST one delivery. Returns "delivered", "retry" or "failed" (after the last attempt)."""
    delivery = WebhookDelivery.objects.select_related("environment").filter(pk=delivery_id).first()
    if delivery is None or delivery.state != WebhookDelivery.PENDING:
        return "delivered" if delivery else "failed"
    timestamp = int(time.time())
    body = json.dumps({"delivery_id": str(delivery.delivery_id), "timestamp": timestamp, **delivery.payload},
                      sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "Modelgate-Webhook/1",
               "X-Modelgate-Event": delivery.event, "X-Modelgate-Delivery": str(delivery.delivery_id),
               "X-Modelgate-Signature": sign(delivery.environment.webhook_secret, timestamp, body)}
    status, error = None, ""
    try:
        response = requests.post(delivery.url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False)
        status = response.status_code
        ok = 200 <= status < 300
        if not ok:
            error = f"HTTP {status}"
    except requests.RequestException as exc:
        ok, error = False, f"{type(exc).__name__}: {exc}"[:500]
    state = WebhookDelivery.DELIVERED if ok else (WebhookDelivery.FAILED if final else WebhookDelivery.PENDING)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=delivery.attempts + 1, last_status=status, last_error=error, state=state,
        delivered_at=timezone.now() if ok else None)
    return {WebhookDelivery.DELIVERED: "delivered", WebhookDelivery.FAILED: "failed"}.get(state, "retry")
