"""Two approvers at the same moment, one approval required: one transition, one deployment."""

import threading

import pytest
from django.contrib.auth.models import Group
from django.db import connection, connections

from console.audit.models import AuditEvent
from console.errors import Conflict
from registry.promotions import services
from registry.promotions.models import PromotionRequest, Review

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks need PostgreSQL; CI's first run (DATABASE_URL set) runs this"
)
def test_simultaneous_approvals_give_one_transition_and_one_queued_deployment(
    engineer, approver, django_user_model, iris, staging, monkeypatch
):
    second = django_user_model.objects.create_user("bo-approver")
    second.groups.add(Group.objects.get(name="approver"))
    req = services.promotion_request(
        actor=engineer, version=iris.versions.get(version=2), environment=staging, justification="j"
    )
    queued = []
    monkeypatch.setattr(services, "_queue_deployment", lambda pk: queued.append(pk))
    barrier = threading.Barrier(2)
    outcomes = []

    def approve(user):
        try:
            barrier.wait()
            services.promotion_approve(actor=user, request_id=req.pk, comment="go")
            outcomes.append("approved")
        except Conflict as exc:
            outcomes.append(f"conflict: {exc.message}")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=approve, args=(u,)) for u in (approver, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert sorted(o.split(":")[0] for o in outcomes) == ["approved", "conflict"]
    assert PromotionRequest.objects.get(pk=req.pk).state == PromotionRequest.APPROVED
    assert AuditEvent.objects.filter(verb="promotion.approved", object_id=str(req.pk)).count() == 1
    assert Review.objects.filter(request=req).count() == 1
    assert queued == [req.pk]
