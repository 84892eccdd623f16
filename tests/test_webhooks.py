"""A real HTTP receiver verifies every delivery's signature and sees the retries."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from registry.promotions import services
from registry.promotions.models import WebhookDelivery
from registry.promotions.tasks import deliver_webhook
from registry.promotions.webhooks import sign, verify

pytestmark = pytest.mark.django_db
SECRET = "whsec-test"


class Receiver:
    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.seen = []
        self.redirect_to = "http://169.254.169.254/latest/meta-data/"
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.seen.append(
                    {
                        "body": body,
                        "signature": self.headers["X-Modelgate-Signature"],
                        "delivery": self.headers["X-Modelgate-Delivery"],
                        "host": self.headers["Host"],
                        "path": self.path,
                        "valid": verify(SECRET, self.headers["X-Modelgate-Signature"], body),
                    }
                )
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", receiver.redirect_to)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receiver(settings):
    # The receiver listens on loopback over plain HTTP: allowed here as an operator would allow it.
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    made = []

    def start(statuses=()):
        made.append(Receiver(statuses))
        return made[-1]

    yield start
    for r in made:
        r.close()


def test_deliveries_are_signed_and_retried_after_a_500(receiver, engineer, approver, iris, staging, celery_eager):
    hook = receiver(statuses=[500, 200])
    staging.webhook_url, staging.webhook_secret = hook.url, SECRET
    staging.save()
    req = services.promotion_request(
        actor=engineer, version=iris.versions.get(version=2), environment=staging, justification="ship it"
    )
    delivery = WebhookDelivery.objects.get(event="promotion.requested")
    deliver_webhook.apply(args=[delivery.pk])

    assert len(hook.seen) == 2
    assert all(seen["valid"] for seen in hook.seen)
    assert {seen["delivery"] for seen in hook.seen} == {str(delivery.delivery_id)}
    payload = json.loads(hook.seen[-1]["body"])
    assert payload["event"] == "promotion.requested" and payload["request"]["id"] == req.pk
    assert payload["delivery_id"] == str(delivery.delivery_id) and isinstance(payload["timestamp"], int)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 2, 200)


def test_a_receiver_that_keeps_failing_ends_failed_with_the_reason(receiver, engineer, iris, staging, celery_eager):
    hook = receiver(statuses=[500] * 20)
    staging.webhook_url, staging.webhook_secret = hook.url, SECRET
    staging.save()
    services.promotion_request(
        actor=engineer, version=iris.versions.get(version=2), environment=staging, justification="j"
    )
    delivery = WebhookDelivery.objects.get()
    deliver_webhook.apply(args=[delivery.pk])
    delivery.refresh_from_db()
    assert delivery.state == "failed"
    assert delivery.attempts == deliver_webhook.max_retries + 1
    assert delivery.last_error == "HTTP 500"


def test_signature_verification_rejects_tampering_and_replays():
    body = b'{"a": 1}'
    header = sign(SECRET, 1_000_000, body)
    assert verify(SECRET, header, body, now=1_000_010)
    assert not verify(SECRET, header, b'{"a": 2}', now=1_000_010)
    assert not verify("other", header, body, now=1_000_010)
    assert not verify(SECRET, header, body, now=1_000_000 + 3600)
