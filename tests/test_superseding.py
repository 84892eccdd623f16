"""Which requests a newer one supersedes: a blocked request supersedes nothing and stays
blocked; only a request that passes its gates cancels the open ones for the same model and
environment, and another user whose request it cancels is told (email and audit).

The attack from issue 11: engineer B's failing request cancelled engineer A's pending one."""

import pytest
from django.contrib.auth.models import Group
from django.core import mail

from console.audit.models import AuditEvent
from registry.promotions.models import Environment, PromotionRequest

pytestmark = pytest.mark.django_db
R = PromotionRequest


@pytest.fixture
def gated(staging):
    """staging asks for accuracy >= 0.92: iris v1 (0.91) is blocked, v2 (0.95) passes."""
    Environment.objects.filter(pk=staging.pk).update(
        metric_thresholds=[{"metric": "accuracy", "op": ">=", "value": 0.92}]
    )
    return staging


@pytest.fixture
def other_engineer(django_user_model):
    user = django_user_model.objects.create_user("bob-engineer", email="bob@example.com")
    user.groups.add(Group.objects.get(name="engineer"))
    return user


def _request(api, user, version):
    return api(user).post(
        "/api/v1/promotions/",
        {"model": "iris", "version": version, "environment": "staging", "justification": "please"},
        format="json",
    )


def test_a_blocked_request_does_not_cancel_someone_elses_pending_one(api, engineer, other_engineer, iris, gated):
    pending = _request(api, engineer, 2).json()
    blocked = _request(api, other_engineer, 1)
    assert blocked.status_code == 201 and blocked.json()["state"] == R.BLOCKED
    assert R.objects.get(pk=pending["id"]).state == R.PENDING
    assert R.objects.get(pk=pending["id"]).superseded_by is None
    assert not AuditEvent.objects.filter(verb="promotion.superseded").exists()


def test_a_blocked_request_stays_blocked_when_a_newer_one_passes(api, engineer, other_engineer, iris, gated):
    blocked = _request(api, other_engineer, 1).json()
    newer = _request(api, engineer, 2).json()
    assert newer["state"] == R.PENDING
    old = R.objects.get(pk=blocked["id"])
    assert old.state == R.BLOCKED and old.superseded_by is None


def test_a_blocked_request_cannot_be_cancelled_into_another_state(api, other_engineer, iris, gated):
    blocked = _request(api, other_engineer, 1).json()
    response = api(other_engineer).post(f"/api/v1/promotions/{blocked['id']}/cancel/", {}, format="json")
    assert response.status_code == 409 and R.objects.get(pk=blocked["id"]).state == R.BLOCKED


def test_superseding_another_users_request_emails_them_and_audits_both_names(
    api, engineer, other_engineer, iris, staging, celery_eager, django_capture_on_commit_callbacks
):
    older = _request(api, other_engineer, 1).json()
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        newer = _request(api, engineer, 2).json()
    old = R.objects.get(pk=older["id"])
    assert old.state == R.CANCELLED and old.superseded_by_id == newer["id"]
    assert "eli-engineer" in old.state_reason
    told = [m for m in mail.outbox if m.to == ["bob@example.com"]]
    assert len(told) == 1 and "cancelled" in told[0].subject and "Superseded" in told[0].body
    event = AuditEvent.objects.get(verb="promotion.superseded")
    assert event.actor_name == "eli-engineer" and event.object_id == str(old.pk)
    assert event.after["requested_by"] == "bob-engineer" and event.after["superseded_by_user"] == "eli-engineer"
    assert event.after["superseded_by"] == newer["id"]


def test_superseding_ones_own_request_sends_no_email_about_it(
    api, other_engineer, iris, staging, celery_eager, django_capture_on_commit_callbacks
):
    _request(api, other_engineer, 1)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        _request(api, other_engineer, 2)
    assert not [m for m in mail.outbox if m.to == ["bob@example.com"]]
    assert AuditEvent.objects.filter(verb="promotion.superseded").count() == 1
