"""A canary's events reach the environment's webhook (signed, received by a real HTTP server)
and the requester's inbox: each step passed, and how it ended (issue 17, item 7)."""

import json

import pytest
from django.core import mail

from deployer.canary.analysis import TrackWindow
from deployer.models import Rollout
from registry.promotions.models import Environment
from tests.canary_fixtures import (  # noqa: F401 - backend, clock and traffic are fixtures
    PLAN,
    backend,
    clock,
    plan,
    promote,
    time_passes,
    traffic,
)
from tests.test_webhooks import SECRET, receiver  # noqa: F401 - receiver is a fixture

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hooked(engineer, approver, iris, staging_local, sent_tasks, backend, receiver, celery_eager):
    """v1 serves in staging; the environment calls a real webhook receiver; the requester
    has an address. Returns the receiver."""
    hook = receiver()
    Environment.objects.filter(pk=staging_local.environment_id).update(webhook_url=hook.url, webhook_secret=SECRET)
    engineer.email = "eli@example.com"
    engineer.save()
    promote(engineer, approver, iris.versions.get(version=1), staging_local.environment, sent_tasks)
    hook.seen.clear()
    mail.outbox.clear()
    return hook


def _events(hook) -> list[dict]:
    assert all(seen["valid"] for seen in hook.seen)
    return [json.loads(seen["body"]) for seen in hook.seen]


def test_each_passed_step_and_the_completion_are_announced(
    hooked, engineer, approver, iris, staging_local, sent_tasks, clock, traffic
):
    req = promote(
        engineer, approver, iris.versions.get(version=2), staging_local.environment, sent_tasks, with_plan=PLAN
    )

    rollout = Rollout.objects.get(request=req)
    time_passes(clock, rollout, sent_tasks)
    time_passes(clock, rollout, sent_tasks)

    canary = [e for e in _events(hooked) if e["event"].startswith("canary.")]
    assert [e["event"] for e in canary] == ["canary.step_passed", "canary.step_passed", "canary.completed"]
    first, second, done = canary
    assert first["canary"]["step"] == 1 and first["canary"]["verdict"]["numbers"]["canary"]["requests"] == 120
    assert first["canary"]["plan"] == "10 % for 5 min, then 50 % for 10 min, then all"
    assert second["canary"]["step"] == 2 and second["canary"]["verdict"]["weight"] == 50
    assert done["canary"]["outcome"] == "live" and len(done["canary"]["verdicts"]) == 2
    assert done["request"]["id"] == req.pk and done["canary"]["url"].endswith(f"/rollouts/{rollout.pk}/")

    subjects = [m.subject for m in mail.outbox if m.to == ["eli@example.com"]]
    assert subjects.count("[Modelgate] iris v2 → staging: canary step passed") == 2
    assert "[Modelgate] iris v2 → staging: canary completed" in subjects
    passed = next(m for m in mail.outbox if m.subject.endswith("canary step passed"))
    assert "Step 1 of 2 (10 % of traffic) passed: canary error rate 0.0 % (0/120)" in passed.body


def test_an_aborted_canary_is_announced_with_the_numbers(
    hooked, engineer, approver, iris, staging_local, sent_tasks, clock, traffic
):
    traffic["canary"] = TrackWindow(requests=50, errors=21, p95_ms=12.0)
    req = promote(
        engineer,
        approver,
        iris.versions.get(version=2),
        staging_local.environment,
        sent_tasks,
        with_plan=plan(min_requests=20),
    )

    time_passes(clock, Rollout.objects.get(request=req), sent_tasks)

    events = _events(hooked)
    assert "canary.step_passed" not in [e["event"] for e in events]
    [aborted] = [e for e in events if e["event"] == "canary.aborted"]
    assert aborted["canary"]["outcome"] == "rolled_back"
    assert "canary error rate 42.0 % (21/50) > stable 0.0 % (0/480) + 1.0 pp" in aborted["canary"]["reason"]
    [message] = [m for m in mail.outbox if m.subject.endswith("canary aborted")]
    assert message.to == ["eli@example.com"] and "42.0 % (21/50)" in message.body
