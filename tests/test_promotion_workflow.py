"""The promotion lifecycle through its services and the API."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from console.audit.models import AuditEvent
from registry.promotions import services
from registry.promotions.models import PromotionRequest, WebhookDelivery
from registry.sync import registry_sync

pytestmark = pytest.mark.django_db
R = PromotionRequest
API = "/api/v1/promotions/"


def _request(api, user, version, env, **extra):
    return api(user).post(
        API,
        {"model": "iris", "version": version, "environment": env, "justification": "better accuracy", **extra},
        format="json",
    )


def test_a_version_that_meets_the_gates_waits_for_approval(api, engineer, iris, staging):
    response = _request(api, engineer, 2, "staging")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["state"] == R.PENDING
    assert all(g["passed"] for g in body["gate_results"])
    assert {g["gate"] for g in body["gate_results"]} >= {"serving signature", "TF Serving can serve it"}


def test_a_failing_gate_blocks_the_request_and_says_why(api, engineer, iris, staging, production):
    body = _request(api, engineer, 1, "production").json()
    assert body["state"] == R.BLOCKED
    failed = {g["gate"]: g["reason"] for g in body["gate_results"] if not g["passed"]}
    assert "accuracy = 0.91, but the policy requires >= 0.92" in failed["metric accuracy >= 0.92"]
    assert "never been live in staging" in failed["live in the previous environment"]
    assert "accuracy" in body["state_reason"]


def test_requester_cannot_approve_own_request(api, engineer, approver, iris, staging):
    engineer.groups.add(Group.objects.get(name="approver"))
    pk = _request(api, engineer, 2, "staging").json()["id"]
    response = api(engineer).post(f"{API}{pk}/approve/", {}, format="json")
    assert response.status_code == 403
    assert "another approver" in response.json()["detail"]
    assert PromotionRequest.objects.get(pk=pk).state == R.PENDING


def test_approver_outside_the_environments_group_cannot_approve(api, engineer, approver, iris, staging):
    staging.approver_group = Group.objects.create(name="staging-approvers")
    staging.save()
    pk = _request(api, engineer, 2, "staging").json()["id"]
    response = api(approver).post(f"{API}{pk}/approve/", {"comment": "lgtm"}, format="json")
    assert response.status_code == 403
    assert "staging-approvers" in response.json()["detail"]


def test_approval_leaves_the_request_waiting_for_deployment(
    api, engineer, approver, iris, staging, django_capture_on_commit_callbacks
):
    pk = _request(api, engineer, 2, "staging").json()["id"]
    with django_capture_on_commit_callbacks(execute=True):
        response = api(approver).post(f"{API}{pk}/approve/", {"comment": "lgtm"}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["state"] == R.APPROVED and body["state_label"] == "Approved, waiting for deployment"
    assert body["deployment_queued_at"] is not None
    assert body["reviews"][0]["comment"] == "lgtm"
    verbs = list(AuditEvent.objects.filter(object_id=str(pk)).values_list("verb", flat=True))
    assert {"promotion.requested", "promotion.reviewed", "promotion.approved"} <= set(verbs)
    again = api(approver).post(f"{API}{pk}/approve/", {}, format="json")
    assert again.status_code == 409


def test_two_approvals_needed_means_two_different_approvers(api, engineer, approver, django_user_model, iris, staging):
    staging.required_approvals = 2
    staging.save()
    second = django_user_model.objects.create_user("bo-approver")
    second.groups.add(Group.objects.get(name="approver"))
    pk = _request(api, engineer, 2, "staging").json()["id"]
    assert api(approver).post(f"{API}{pk}/approve/", {}, format="json").json()["state"] == R.PENDING
    assert api(approver).post(f"{API}{pk}/approve/", {}, format="json").status_code == 409
    assert api(second).post(f"{API}{pk}/approve/", {}, format="json").json()["state"] == R.APPROVED


def test_reject_needs_a_comment(api, engineer, approver, iris, staging):
    pk = _request(api, engineer, 2, "staging").json()["id"]
    refused = api(approver).post(f"{API}{pk}/reject/", {"comment": ""}, format="json")
    assert refused.status_code == 400 and "comment" in refused.json()["fields"]
    done = api(approver).post(f"{API}{pk}/reject/", {"comment": "latency too high"}, format="json").json()
    assert done["state"] == R.REJECTED and "latency too high" in done["state_reason"]


def test_a_newer_request_supersedes_the_open_one(api, engineer, iris, staging):
    first = _request(api, engineer, 1, "staging").json()["id"]
    second = _request(api, engineer, 2, "staging").json()["id"]
    old = PromotionRequest.objects.get(pk=first)
    assert old.state == R.CANCELLED and old.superseded_by_id == second
    assert "Superseded" in old.state_reason


def test_only_the_requester_or_an_admin_cancels(api, engineer, django_user_model, admin_user, iris, staging):
    other = django_user_model.objects.create_user("olga-engineer")
    other.groups.add(Group.objects.get(name="engineer"))
    pk = _request(api, engineer, 2, "staging").json()["id"]
    assert api(other).post(f"{API}{pk}/cancel/", {}, format="json").status_code == 403
    assert (
        api(admin_user).post(f"{API}{pk}/cancel/", {"reason": "freeze"}, format="json").json()["state"] == R.CANCELLED
    )
    assert api(engineer).post(f"{API}{pk}/cancel/", {}, format="json").status_code == 409


def test_comments_thread(api, engineer, approver, iris, staging):
    pk = _request(api, engineer, 2, "staging").json()["id"]
    parent = api(approver).post(f"{API}{pk}/comments/", {"body": "p99?"}, format="json").json()
    api(engineer).post(f"{API}{pk}/comments/", {"body": "12 ms", "reply_to": parent["id"]}, format="json")
    thread = api(approver).get(f"{API}{pk}/comments/").json()
    assert [(c["body"], c["reply_to"]) for c in thread] == [("p99?", None), ("12 ms", parent["id"])]
    bad = api(engineer).post(f"{API}{pk}/comments/", {"body": "x", "reply_to": 999999}, format="json")
    assert bad.status_code == 400 and "reply_to" in bad.json()["fields"]


def test_pending_requests_expire(api, engineer, iris, staging):
    pk = _request(api, engineer, 2, "staging").json()["id"]
    assert services.promotions_expire(now=timezone.now() + timedelta(hours=73)) == 1
    assert PromotionRequest.objects.get(pk=pk).state == R.EXPIRED
    assert services.promotions_expire(now=timezone.now() + timedelta(hours=73)) == 0


def test_unknown_version_or_environment_is_a_404(api, engineer, iris, staging):
    assert _request(api, engineer, 9, "staging").status_code == 404
    response = _request(api, engineer, 2, "moon")
    assert response.status_code == 404 and "'moon'" in response.json()["detail"]


def _go_live(req):
    assert services.promotion_start_deploying(request_id=req.pk)
    return services.promotion_mark_live(request_id=req.pk)


def _approved(engineer, approver, version, env, **kw):
    req = services.promotion_request(actor=engineer, version=version, environment=env, justification="j", **kw)
    return services.promotion_approve(actor=approver, request_id=req.pk)


def test_which_version_served_at_time_t(api, engineer, approver, iris, staging, mlflow_store, monkeypatch):
    v1, v2 = iris.versions.get(version=1), iris.versions.get(version=2)
    clock = [timezone.now()]
    monkeypatch.setattr(timezone, "now", lambda: clock[0])
    marks = {}

    def tick(label):
        """Mark a moment strictly between the previous action and the next."""
        clock[0] += timedelta(minutes=10)
        marks[label] = clock[0]
        clock[0] += timedelta(minutes=10)

    tick("before")
    _go_live(_approved(engineer, approver, v1, staging))
    tick("v1 live")
    _go_live(_approved(engineer, approver, v2, staging))
    tick("v2 live")
    third = _go_live(_approved(engineer, approver, v1, staging))
    tick("v1 again")
    services.promotion_roll_back_live(request_id=third.pk, reason="error rate")
    tick("after rollback")
    # A failed deployment changes nothing: the alias never moves.
    failed = _approved(engineer, approver, v1, staging)
    services.promotion_start_deploying(request_id=failed.pk)
    services.promotion_mark_failed(request_id=failed.pk, reason="version did not load", rolled_back=True)
    tick("after failure")

    client = api(engineer)

    def served(label):
        body = client.get(
            "/api/v1/environments/staging/history/", {"model": "iris", "at": marks[label].isoformat()}
        ).json()
        return body["version"]

    assert [served(m) for m in ("before", "v1 live", "v2 live", "v1 again", "after rollback", "after failure")] == [
        None,
        1,
        2,
        1,
        2,
        2,
    ]
    assert str(mlflow_store.client().get_model_version_by_alias("iris", "staging").version) == "2"
    iris.refresh_from_db()
    assert iris.aliases == {"staging": 2}


def test_an_alias_moved_in_mlflow_is_drift_and_can_be_restored(
    engineer, approver, admin_user, iris, staging, mlflow_store
):
    from registry.promotions.selectors import alias_drift

    _go_live(_approved(engineer, approver, iris.versions.get(version=2), staging))
    mlflow_store.client().set_registered_model_alias("iris", "staging", "1")
    registry_sync()
    iris.refresh_from_db()
    assert alias_drift(iris) == [{"environment": "staging", "alias": "staging", "expected": 2, "actual": 1}]
    assert AuditEvent.objects.filter(verb="alias.drift", object_repr="iris").exists()
    services.alias_restore(actor=admin_user, model=iris, environment=staging)
    assert str(mlflow_store.client().get_model_version_by_alias("iris", "staging").version) == "2"
    iris.refresh_from_db()
    assert alias_drift(iris) == []


def test_previous_environment_rule_passes_once_live_there(engineer, approver, iris, staging, production):
    _go_live(_approved(engineer, approver, iris.versions.get(version=2), staging))
    req = services.promotion_request(
        actor=engineer, version=iris.versions.get(version=2), environment=production, justification="j"
    )
    assert req.state == R.PENDING, req.state_reason


def test_breaking_signature_change_blocks_unless_declared(engineer, approver, iris, staging):
    from registry.models import ModelVersion

    _go_live(_approved(engineer, approver, iris.versions.get(version=1), staging))
    ModelVersion.objects.filter(model=iris, version=2).update(
        signature={"inputs": [{"name": "features", "dtype": "float64", "shape": [-1, 4]}], "outputs": []}
    )
    v2 = iris.versions.get(version=2)
    blocked = services.promotion_request(actor=engineer, version=v2, environment=staging, justification="j")
    assert blocked.state == R.BLOCKED and "changed dtype float32 → float64" in blocked.state_reason
    declared = services.promotion_request(
        actor=engineer, version=v2, environment=staging, justification="j", breaking_change=True
    )
    assert declared.state == R.PENDING


def test_zero_approval_environment_approves_at_once(engineer, iris, db):
    from registry.promotions.models import Environment

    dev = Environment.objects.create(name="dev", position=0, alias="dev", required_approvals=0)
    req = services.promotion_request(
        actor=engineer, version=iris.versions.get(version=2), environment=dev, justification="j"
    )
    assert req.state == R.APPROVED


def test_webhooks_are_recorded_per_environment(engineer, iris, staging):
    staging.webhook_url, staging.webhook_secret = "http://127.0.0.1:9/hook", "s3cret"
    staging.save()
    services.promotion_request(
        actor=engineer, version=iris.versions.get(version=2), environment=staging, justification="j"
    )
    delivery = WebhookDelivery.objects.get()
    assert delivery.event == "promotion.requested" and delivery.payload["request"]["model"] == "iris"
