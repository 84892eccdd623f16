import pytest
from django.core import mail

from registry.promotions import services

pytestmark = pytest.mark.django_db


def test_approvers_hear_of_a_request_and_the_requester_of_the_decision(
    engineer, approver, iris, staging, celery_eager, django_capture_on_commit_callbacks
):
    engineer.email, approver.email = "eli@example.com", "ada@example.com"
    engineer.save(), approver.save()
    with django_capture_on_commit_callbacks(execute=True):
        req = services.promotion_request(
            actor=engineer, version=iris.versions.get(version=2), environment=staging, justification="better recall"
        )
    assert [m.to for m in mail.outbox] == [["ada@example.com"]]
    assert "iris v2 → staging" in mail.outbox[0].subject and "better recall" in mail.outbox[0].body
    with django_capture_on_commit_callbacks(execute=True):
        services.promotion_approve(actor=approver, request_id=req.pk, comment="ok")
    assert mail.outbox[-1].to == ["eli@example.com"]
    assert "approved" in mail.outbox[-1].subject


def test_gates_are_checked_again_before_deployment(engineer, approver, iris, staging):
    req = services.promotion_request(
        actor=engineer, version=iris.versions.get(version=2), environment=staging, justification="j"
    )
    services.promotion_approve(actor=approver, request_id=req.pk)
    services.promotion_start_deploying(request_id=req.pk)
    staging.metric_thresholds = [{"metric": "accuracy", "op": ">=", "value": 0.99}]
    staging.save()
    assert services.promotion_gates_recheck(request_id=req.pk) is False
    req.refresh_from_db()
    assert req.state == "failed" and "just before deployment" in req.state_reason
