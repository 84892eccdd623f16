"""Outbound webhooks: HMAC-SHA256-signed JSON with a timestamp and a delivery id.

A receiver verifies ``X-Modelgate-Signature: t=<unix time>,v1=<hex>`` by computing
HMAC-SHA256(secret, "<t>.<raw body>") and rejecting old timestamps (replays).
"""

import hashlib
import hmac
import json
import time
from urllib.parse import urlsplit

import certifi
import urllib3
from django.conf import settings
from django.utils import timezone

from .models import WebhookDelivery
from .webhook_address import WebhookAddressError, check_url, resolve

TIMEOUT = 10


class DeliveryRefused(Exception):
    """The receiver did not take a delivery (an HTTP error status, a network error): a later
    attempt may succeed, so the delivery task retries on it, with Celery's backoff."""


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
            "id": req.pk,
            "state": req.state,
            "state_reason": req.state_reason,
            "model": req.model.name,
            "version": req.version.version,
            "environment": req.environment.name,
            "requested_by": req.requested_by.get_username(),
            "justification": req.justification,
            "url": f"{settings.MODELGATE_URL.rstrip('/')}/promotions/{req.pk}/",
        },
    }


def _post(url: str, body: bytes, headers: dict) -> int:
    """POST to ``url`` at the address its host resolves to now, checked (webhook_address.py):
    the connection goes to that very address (TLS still verifies the host name), and a redirect
    is returned as it is, never followed."""
    scheme, host, port = check_url(url)
    address = resolve(host, port)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    shown_host = f"[{host}]" if ":" in host else host
    default_port = port == (443 if scheme == "https" else 80)
    headers = {**headers, "Host": shown_host if default_port else f"{shown_host}:{port}"}
    timeout = urllib3.Timeout(connect=TIMEOUT, read=TIMEOUT)
    pool: urllib3.HTTPConnectionPool
    if scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address,
            port,
            timeout=timeout,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
            server_hostname=host,
            assert_hostname=host,
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False)
    with pool:
        response = pool.urlopen(
            "POST",
            target,
            body=body,
            headers=headers,
            redirect=False,
            retries=False,
            assert_same_host=False,
            preload_content=True,
        )
    return response.status


def _without_path(message: str, url: str) -> str:
    """An error message with the URL's path taken out: it may carry a credential."""
    path = urlsplit(url).path
    return message.replace(path, "/…") if path and path != "/" else message


def webhook_attempt(delivery_id: int, *, final: bool) -> str:
    """POST one delivery. Returns "delivered", or "failed" when no attempt is left (``final``)
    or none could help (the address is refused); raises DeliveryRefused when another may."""
    delivery = WebhookDelivery.objects.select_related("environment").filter(pk=delivery_id).first()
    if delivery is None or delivery.state != WebhookDelivery.PENDING:
        return "delivered" if delivery else "failed"
    timestamp = int(time.time())
    body = json.dumps(
        {"delivery_id": str(delivery.delivery_id), "timestamp": timestamp, **delivery.payload}, sort_keys=True
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Modelgate-Webhook/1",
        "X-Modelgate-Event": delivery.event,
        "X-Modelgate-Delivery": str(delivery.delivery_id),
        "X-Modelgate-Signature": sign(delivery.environment.webhook_secret, timestamp, body),
    }
    status, error = None, ""
    try:
        status = _post(delivery.url, body, headers)
        ok = 200 <= status < 300
        if not ok:
            error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    except WebhookAddressError as exc:
        ok, error, final = False, _without_path(exc.message, delivery.url)[:500], True  # retrying will not help
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        ok, error = False, _without_path(f"{type(exc).__name__}: {exc}", delivery.url)[:500]
    state = WebhookDelivery.DELIVERED if ok else (WebhookDelivery.FAILED if final else WebhookDelivery.PENDING)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=delivery.attempts + 1,
        last_status=status,
        last_error=error,
        state=state,
        delivered_at=timezone.now() if ok else None,
    )
    if state == WebhookDelivery.PENDING:
        raise DeliveryRefused(error)
    return "delivered" if ok else "failed"
