"""Webhooks reach only public addresses over https (issue 11, point 6), and nobody but an admin
editing the environment sees more of the URL than its host."""

import socket

import pytest

from console.audit.models import AuditEvent
from registry.promotions import webhook_address
from registry.promotions.models import WebhookDelivery
from registry.promotions.tasks import deliver_webhook
from registry.promotions.webhooks import webhook_attempt
from tests.test_webhooks import SECRET, receiver  # noqa: F401  (the real HTTP receiver fixture)

pytestmark = pytest.mark.django_db
SLACK = "https://hooks.slack.com/services/T0000/B0000/XXXXsecretXXXX"


def _edit(client, url: str):
    return client.post(
        "/environments/staging/edit/",
        {
            "name": "staging",
            "position": 1,
            "alias": "staging",
            "required_approvals": 1,
            "request_ttl_hours": 72,
            "webhook_url": url,
        },
    )


@pytest.mark.parametrize(
    "url, says",
    [
        ("http://169.254.169.254/latest/meta-data/", "https://"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://[::1]:6379/", "loopback"),
        ("https://[::ffff:127.0.0.1]/", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("https://[fd00:ec2::254]/", "private"),
        ("https://100.100.100.200/", "not a public address"),
        ("https://0.0.0.0/", "unspecified"),
        ("https://224.0.0.1/", "multicast"),
        ("https://localhost:8000/hook", "loopback"),
        ("ftp://hooks.example.com/x", "https://"),
        ("https://user:pw@hooks.example.com/x", "user name or password"),
    ],
)
def test_an_internal_or_odd_webhook_url_is_refused_when_saved(browser_client, admin_user, staging, url, says):
    events = AuditEvent.objects.count()
    page = _edit(browser_client(admin_user), url)
    assert page.status_code == 400
    errors = page.context["form"].errors["webhook_url"]
    assert any(says in e for e in errors), errors
    staging.refresh_from_db()
    assert staging.webhook_url == "" and AuditEvent.objects.count() == events


def test_the_allow_list_and_the_http_setting_let_an_operator_open_what_they_mean(
    browser_client, admin_user, staging, settings
):
    settings.WEBHOOK_ALLOW_HTTP, settings.WEBHOOK_ALLOWED_NETWORKS = True, ["10.0.0.0/8"]
    assert _edit(browser_client(admin_user), "http://10.1.2.3/hook").status_code == 302
    staging.refresh_from_db()
    assert staging.webhook_url == "http://10.1.2.3/hook"
    assert _edit(browser_client(admin_user), "http://192.168.1.1/hook").status_code == 400


def _queue_delivery(env, url):
    env.webhook_url, env.webhook_secret = url, SECRET
    env.save()  # as if the name resolved elsewhere when it was saved
    return WebhookDelivery.objects.create(environment=env, event="promotion.requested", payload={}, url=url)


def test_a_host_resolving_to_an_internal_address_at_send_time_is_refused_without_connecting(
    receiver,
    staging,  # noqa: F811
    settings,
):
    hook = receiver()
    settings.WEBHOOK_ALLOWED_NETWORKS = []  # plain HTTP on, but loopback not allowed
    delivery = _queue_delivery(staging, hook.url.replace("127.0.0.1", "localhost"))
    assert webhook_attempt(delivery.pk, final=False) == "failed"  # no retry: the address will not change
    delivery.refresh_from_db()
    assert hook.seen == []
    assert delivery.state == "failed" and "loopback" in delivery.last_error and delivery.last_status is None


def test_the_sender_connects_to_the_address_it_checked_and_resolves_once(receiver, staging, monkeypatch):  # noqa: F811
    """DNS rebinding: the first answer passes the check, a second lookup would give the metadata
    service. The sender must not look again; it connects to the checked address, naming the host."""
    hook = receiver()
    port = hook.server.server_port
    answers = ["127.0.0.1", "169.254.169.254"]
    real_getaddrinfo = socket.getaddrinfo

    def rebinding_dns(host, *args, **kwargs):
        if host != "hooks.rebind.test":
            return real_getaddrinfo(host, *args, **kwargs)
        ip = answers.pop(0)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]

    monkeypatch.setattr(webhook_address.socket, "getaddrinfo", rebinding_dns)
    delivery = _queue_delivery(staging, f"http://hooks.rebind.test:{port}/hook?x=1")
    assert webhook_attempt(delivery.pk, final=True) == "delivered"
    assert answers == ["169.254.169.254"]  # asked once
    assert hook.seen[0]["host"] == f"hooks.rebind.test:{port}" and hook.seen[0]["path"] == "/hook?x=1"


def test_a_redirect_is_not_followed(receiver, staging, celery_eager):  # noqa: F811
    elsewhere = receiver()
    hook = receiver(statuses=[302] * 10)
    hook.redirect_to = elsewhere.url
    delivery = _queue_delivery(staging, hook.url)
    deliver_webhook.apply(args=[delivery.pk])
    delivery.refresh_from_db()
    assert elsewhere.seen == []
    assert delivery.last_status == 302 and "not followed" in delivery.last_error


def test_viewers_see_only_the_host(browser_client, api, viewer, admin_user, staging, settings):
    assert _edit(browser_client(admin_user), SLACK).status_code == 302  # the name does not resolve here
    staging.refresh_from_db()
    assert staging.webhook_url == SLACK
    WebhookDelivery.objects.create(
        environment=staging, event="promotion.requested", payload={}, url=SLACK, state=WebhookDelivery.PENDING
    )
    delivery = WebhookDelivery.objects.get()
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    webhook_attempt(delivery.pk, final=True)

    shown = [browser_client(viewer).get(path).content.decode() for path in ("/environments/staging/", "/audit/")]
    shown += [api(viewer).get(path).content.decode() for path in ("/api/v1/environments/", "/api/v1/audit/")]
    shown.append(browser_client(admin_user).get("/environments/staging/webhooks/").content.decode())
    shown.append(str(list(AuditEvent.objects.values("before", "after"))))
    delivery.refresh_from_db()
    shown.append(delivery.last_error)
    assert "hooks.slack.com" in shown[0] and "hooks.slack.com" in shown[4]
    assert not [text for text in shown if "XXXXsecretXXXX" in text]
