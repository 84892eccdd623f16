"""Undeploy and redeploy go through the environment's approvals, as a rollback does; with
no approval required they run at once. Break-glass: an admin stops a deployment at once with
a reason, the approvers are told and the audit trail marks it.

The attack from issue 11: any engineer undeployed production at once."""

import pytest
from django.core import mail

from console.audit.models import AuditEvent
from deployer import services
from deployer.models import Deployment, Rollout
from registry.promotions.models import Environment, PromotionRequest, WebhookDelivery
from tests.test_deployer_pages import served  # noqa: F401 - a fixture: iris v2 serving in staging

pytestmark = pytest.mark.django_db
R = PromotionRequest


@pytest.mark.parametrize("verb, body", [("undeploy", {"reason": "retire it"}), ("redeploy", {"reason": "restart"})])
def test_an_engineer_no_longer_takes_a_deployment_down_at_once_where_approval_is_required(
    api, engineer, served, sent_tasks, django_capture_on_commit_callbacks, verb, body
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api(engineer).post(f"/api/v1/deployments/{served.pk}/{verb}/", body, format="json")
    assert response.status_code == 201
    req = response.json()
    assert req["kind"] == verb and req["state"] == R.PENDING and req["version"] == 2
    assert req["justification"] == body["reason"] and req["gate_results"] == []
    assert served.rollouts.count() == 3 and sent_tasks == []  # nothing runs yet
    served.refresh_from_db()
    assert served.state == Deployment.SERVING


def test_once_approved_an_undeploy_request_becomes_its_undeploy_rollout(
    api, engineer, approver, served, sent_tasks, django_capture_on_commit_callbacks
):
    pk = (
        api(engineer)
        .post(f"/api/v1/deployments/{served.pk}/undeploy/", {"reason": "retire it"}, format="json")
        .json()["id"]
    )
    assert api(engineer).post(f"/api/v1/promotions/{pk}/approve/", {}, format="json").status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        assert api(approver).post(f"/api/v1/promotions/{pk}/approve/", {}, format="json").json()["state"] == R.APPROVED
    assert sent_tasks == [("deployer.deploy_promotion", [pk])]
    rollout = Rollout.objects.get(pk=services.rollout_for_promotion(request_id=pk))
    assert rollout.kind == Rollout.UNDEPLOY and rollout.request_id == pk and rollout.reason == "retire it"
    assert [s["name"] for s in rollout.steps] == ["remove", "unalias", "close"]
    assert R.objects.get(pk=pk).state == R.DEPLOYING


def test_an_approved_redeploy_re_applies_the_live_version(api, engineer, approver, served):
    pk = api(engineer).post(f"/api/v1/deployments/{served.pk}/redeploy/", {}, format="json").json()["id"]
    api(approver).post(f"/api/v1/promotions/{pk}/approve/", {}, format="json")
    rollout = Rollout.objects.get(pk=services.rollout_for_promotion(request_id=pk))
    assert rollout.kind == Rollout.REDEPLOY and rollout.version == served.live_rollout.version
    assert [s["name"] for s in rollout.steps] == ["export", "apply", "wait", "verify", "close"]


def test_with_no_approval_required_undeploy_runs_at_once(
    api, engineer, served, sent_tasks, django_capture_on_commit_callbacks
):
    Environment.objects.filter(pk=served.target.environment_id).update(required_approvals=0)
    with django_capture_on_commit_callbacks(execute=True):
        response = api(engineer).post(f"/api/v1/deployments/{served.pk}/undeploy/", {"reason": "r"}, format="json")
    assert response.status_code == 202 and response.json()["kind"] == "undeploy"
    assert sent_tasks == [("deployer.run_rollout", [response.json()["id"]])]
    assert not R.objects.filter(kind=R.UNDEPLOY).exists()


def test_the_deployment_pages_show_the_pending_request(api, browser_client, engineer, viewer, served):
    pk = (
        api(engineer)
        .post(f"/api/v1/deployments/{served.pk}/undeploy/", {"reason": "retire it"}, format="json")
        .json()["id"]
    )
    client = browser_client(viewer)
    listing = client.get("/deployments/").content.decode()
    assert f"/promotions/{pk}/" in listing and "undeploy pending" in listing
    detail = client.get(f"/deployments/{served.pk}/").content.decode()
    assert "Waiting for a decision" in detail and f"request #{pk}" in detail and "undeploy" in detail
    row = api(viewer).get("/api/v1/deployments/").json()["results"][0]
    assert row["pending_request"] == {"id": pk, "kind": "undeploy", "state": R.PENDING}


def test_the_undeploy_form_says_it_makes_a_request_and_lands_on_it(browser_client, engineer, served):
    client = browser_client(engineer)
    assert "Request undeploy" in client.get(f"/deployments/{served.pk}/").content.decode()
    response = client.post(f"/deployments/{served.pk}/undeploy/", {"reason": "retire it"})
    req = R.objects.get(kind=R.UNDEPLOY)
    assert response.status_code == 302 and response["Location"] == f"/promotions/{req.pk}/"
    assert served.rollouts.count() == 3


# --- break-glass ---------------------------------------------------------------------------


def test_only_admins_may_break_glass(api, engineer, approver, served):
    for user in (engineer, approver):
        response = api(user).post(f"/api/v1/deployments/{served.pk}/stop/", {"reason": "fire"}, format="json")
        assert response.status_code == 403
    assert served.rollouts.count() == 3 and not AuditEvent.objects.filter(verb="deployment.break_glass_stop").exists()


def test_break_glass_needs_a_reason(api, admin_user, served):
    response = api(admin_user).post(f"/api/v1/deployments/{served.pk}/stop/", {"reason": "  "}, format="json")
    assert response.status_code == 400 and "reason" in response.json()["fields"]
    assert served.rollouts.count() == 3 and not AuditEvent.objects.filter(verb="deployment.break_glass_stop").exists()


def test_break_glass_stops_at_once_tells_the_approvers_and_is_marked_in_the_audit(
    api, admin_user, approver, served, sent_tasks, celery_eager, django_capture_on_commit_callbacks, monkeypatch
):
    from registry.promotions import tasks

    approver.email = "ada@example.com"
    approver.save()
    Environment.objects.filter(pk=served.target.environment_id).update(webhook_url="https://hooks.example.com/mg")
    posted = []
    # notify queues the delivery by name; Celery then calls the registered task's apply_async.
    monkeypatch.setattr(tasks.deliver_webhook, "apply_async", lambda args, kwargs=None, **options: posted.append(*args))
    with django_capture_on_commit_callbacks(execute=True):
        response = api(admin_user).post(
            f"/api/v1/deployments/{served.pk}/stop/", {"reason": "serving wrong prices"}, format="json"
        )
    assert response.status_code == 202
    rollout = response.json()
    assert rollout["kind"] == "undeploy" and "Break-glass" in rollout["reason"]
    assert sent_tasks == [("deployer.run_rollout", [rollout["id"]])]
    event = AuditEvent.objects.get(verb="deployment.break_glass_stop")
    assert event.actor_name == "ari-admin" and event.after["reason"] == "serving wrong prices"
    assert event.after["break_glass"] is True and event.object_id == str(served.pk)
    [email] = [m for m in mail.outbox if m.to == ["ada@example.com"]]
    assert "BREAK-GLASS" in email.subject and "serving wrong prices" in email.body
    delivery = WebhookDelivery.objects.get(event="deployment.break_glass_stop")
    assert delivery.payload["deployment"]["stopped_by"] == "ari-admin" and posted == [delivery.pk]


def test_break_glass_from_the_deployment_page(browser_client, admin_user, engineer, served):
    assert "Break-glass stop" not in browser_client(engineer).get(f"/deployments/{served.pk}/").content.decode()
    client = browser_client(admin_user)
    assert "Break-glass stop" in client.get(f"/deployments/{served.pk}/").content.decode()
    refused = client.post(f"/deployments/{served.pk}/stop/", {"reason": ""})
    assert refused.status_code == 400 and served.rollouts.count() == 3
    done = client.post(f"/deployments/{served.pk}/stop/", {"reason": "leaking data"})
    rollout = served.rollouts.get(kind=Rollout.UNDEPLOY)
    assert done.status_code == 302 and done["Location"] == f"/rollouts/{rollout.pk}/"
