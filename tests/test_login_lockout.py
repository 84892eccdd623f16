"""Issue 11.5: guessing passwords is stopped. After LOGIN_FAILURE_LIMIT failures for a
username, or from an address, sign-in is refused with a 429 page (even with the right
password) for LOGIN_LOCKOUT_MINUTES, and every refusal is in the audit trail."""

from collections import Counter
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import RequestFactory
from django.utils import timezone

from console.audit.models import AuditEvent
from console.clientip import client_ip

pytestmark = pytest.mark.django_db


def _sign_in(client, username, password, ip="198.51.100.7", **headers):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=ip, **headers)


def _signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def _login_verbs() -> Counter:
    return Counter(AuditEvent.objects.filter(verb__startswith="login.").values_list("verb", flat=True))


def test_sixty_wrong_passwords_then_the_right_one_is_still_locked_out(client, engineer, settings):
    for _ in range(60):
        response = _sign_in(client, "eli-engineer", "guess")
    assert response.status_code == 429

    response = _sign_in(client, "eli-engineer", "pw-eli-engineer")

    assert response.status_code == 429
    assert not _signed_in(client)
    assert response["Retry-After"] == str(settings.LOGIN_LOCKOUT_MINUTES * 60)
    page = response.content.decode()
    assert "Too many failed sign-ins" in page and f"{settings.LOGIN_LOCKOUT_MINUTES} minutes" in page
    # The 9 wrong passwords before the limit are failures; the 10th starts the lockout, and
    # the other 50 guesses and the right password were refused by it.
    assert _login_verbs() == {
        "login.failed": settings.LOGIN_FAILURE_LIMIT - 1,
        "login.locked_out": 60 - settings.LOGIN_FAILURE_LIMIT + 2,
    }


def test_a_wrong_password_below_the_limit_shows_the_form_and_is_audited(client, engineer):
    response = _sign_in(client, "eli-engineer", "guess")

    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    event = AuditEvent.objects.get(verb="login.failed")
    assert event.actor_name == "anonymous" and event.object_id == str(engineer.pk)
    assert event.after == {"username": "eli-engineer", "ip_address": "198.51.100.7", "known_user": True}
    assert _sign_in(client, "eli-engineer", "pw-eli-engineer").status_code == 302
    assert _signed_in(client)


def test_an_address_that_guesses_many_usernames_is_locked_out_for_everyone(client, viewer, settings):
    for i in range(settings.LOGIN_FAILURE_LIMIT):
        _sign_in(client, f"user{i}", "guess", ip="203.0.113.9")

    assert _sign_in(client, "vera-viewer", "pw-vera-viewer", ip="203.0.113.9").status_code == 429
    assert _sign_in(client, "vera-viewer", "pw-vera-viewer", ip="203.0.113.10").status_code == 302


def test_a_username_guessed_from_many_addresses_is_locked_out_from_every_address(client, engineer, viewer, settings):
    for i in range(settings.LOGIN_FAILURE_LIMIT):
        _sign_in(client, "eli-engineer", "guess", ip=f"192.0.2.{i + 1}")

    assert _sign_in(client, "eli-engineer", "pw-eli-engineer", ip="192.0.2.200").status_code == 429
    # Other users at those addresses are not affected.
    assert _sign_in(client, "vera-viewer", "pw-vera-viewer", ip="192.0.2.1").status_code == 302


def test_a_forged_x_forwarded_for_does_not_escape_the_address_lockout(client, viewer, settings):
    assert settings.TRUSTED_PROXY_COUNT == 0
    for i in range(settings.LOGIN_FAILURE_LIMIT):
        _sign_in(client, f"user{i}", "guess", HTTP_X_FORWARDED_FOR=f"10.9.9.{i}")

    response = _sign_in(client, "vera-viewer", "pw-vera-viewer", HTTP_X_FORWARDED_FOR="10.9.9.250")
    assert response.status_code == 429


def test_the_lockout_ends_after_the_lockout_minutes(client, engineer, settings):
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        _sign_in(client, "eli-engineer", "guess")
    assert _sign_in(client, "eli-engineer", "pw-eli-engineer").status_code == 429

    then = timezone.now() - timedelta(minutes=settings.LOGIN_LOCKOUT_MINUTES, seconds=1)
    AccessAttempt.objects.update(attempt_time=then)

    assert _sign_in(client, "eli-engineer", "pw-eli-engineer").status_code == 302


def test_the_limit_comes_from_the_setting(client, engineer, settings):
    settings.AXES_FAILURE_LIMIT = 3
    statuses = [_sign_in(client, "eli-engineer", "guess").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_the_admin_login_shares_the_lockout(client, admin_user, settings):
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        _sign_in(client, "ari-admin", "guess")
    response = client.post(
        "/admin/login/", {"username": "ari-admin", "password": "pw-ari-admin"}, REMOTE_ADDR="198.51.100.99"
    )
    assert response.status_code == 429
    assert not _signed_in(client)


@pytest.mark.parametrize(
    "proxies, remote, forwarded, expected",
    [
        (0, "198.51.100.7", "", "198.51.100.7"),
        (0, "198.51.100.7", "10.0.0.1", "198.51.100.7"),  # no trusted proxy: header ignored
        (1, "10.0.0.2", "203.0.113.5", "203.0.113.5"),  # the proxy's own entry
        (1, "10.0.0.2", "6.6.6.6, 203.0.113.5", "203.0.113.5"),  # the client's forged entry is skipped
        (2, "10.0.0.2", "6.6.6.6, 203.0.113.5, 10.0.0.3", "203.0.113.5"),
        (1, "10.0.0.2", "not-an-address", "10.0.0.2"),
        (1, "10.0.0.2", "", "10.0.0.2"),
        (1, "10.0.0.2", "2001:db8::1", "2001:db8::1"),
    ],
)
def test_the_client_address_trusts_only_the_configured_proxies(settings, proxies, remote, forwarded, expected):
    settings.TRUSTED_PROXY_COUNT = proxies
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    request = RequestFactory().get("/", REMOTE_ADDR=remote, **extra)
    assert client_ip(request) == expected


def test_a_request_without_an_address_has_no_client_address(settings):
    request = RequestFactory().get("/")
    del request.META["REMOTE_ADDR"]
    assert client_ip(request) is None
