"""Protected environments: self-approval cannot be switched on, a policy change waits for a
second admin, and no flag (admin, superuser) lets anyone approve outside the policy.

The attack from issue 11: one admin set production's approver group to `admin`, enabled
self-approval, then requested and approved their own promotion."""

import pytest
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction

from console.accounts.roles import ADMIN
from console.audit.models import AuditEvent
from registry.promotions.models import (
    Environment,
    PolicyChange,
    PromotionRequest,
    Review,
)
from tests.promotion_fixtures import settings_form

pytestmark = pytest.mark.django_db
R = PromotionRequest


def _policy(env: Environment) -> tuple:
    env.refresh_from_db()
    return (
        env.required_approvals,
        env.approver_group_id,
        env.allow_self_approval,
        env.protected,
        env.metric_thresholds,
        env.require_previous,
    )


def test_the_attack_one_admin_cannot_make_themselves_approver_and_approve_their_own_promotion(
    api, admin_user, protected, iris
):
    admin_group = Group.objects.get(name=ADMIN)
    before = _policy(protected)
    client = api(admin_user)

    refused = client.post(
        "/api/v1/environments/production/policy-changes/",
        {"approver_group": "admin", "allow_self_approval": True},
        format="json",
    )
    assert refused.status_code == 400 and "allow_self_approval" in refused.json()["fields"]
    assert not PolicyChange.objects.exists()

    proposed = client.post(
        "/api/v1/environments/production/policy-changes/", {"approver_group": "admin"}, format="json"
    )
    assert proposed.status_code == 201 and proposed.json()["state"] == "pending"
    assert _policy(protected) == before  # nothing applies yet
    own = client.post(f"/api/v1/environments/production/policy-changes/{proposed.json()['id']}/confirm/")
    assert own.status_code == 403 and "second admin" in own.json()["detail"]
    assert _policy(protected) == before and protected.approver_group != admin_group

    # And the request the admin makes is still reviewed by the approver group, never by them.
    pk = client.post(
        "/api/v1/promotions/",
        {"model": "iris", "version": 2, "environment": "production", "justification": "ship it"},
        format="json",
    ).json()["id"]
    approve = client.post(f"/api/v1/promotions/{pk}/approve/", {}, format="json")
    assert approve.status_code == 403
    assert R.objects.get(pk=pk).state == R.PENDING and not Review.objects.exists()


def test_even_with_a_second_admin_the_requester_never_approves_their_own_request_there(
    api, admin_user, second_admin, protected, iris
):
    change = (
        api(admin_user)
        .post(
            "/api/v1/environments/production/policy-changes/",
            {"approver_group": "admin", "reason": "admins review"},
            format="json",
        )
        .json()
    )
    confirmed = api(second_admin).post(f"/api/v1/environments/production/policy-changes/{change['id']}/confirm/")
    assert confirmed.status_code == 200 and confirmed.json()["decided_by"] == "bea-admin"
    protected.refresh_from_db()
    assert protected.approver_group.name == "admin"

    pk = (
        api(admin_user)
        .post(
            "/api/v1/promotions/",
            {"model": "iris", "version": 2, "environment": "production", "justification": "ship it"},
            format="json",
        )
        .json()["id"]
    )
    own = api(admin_user).post(f"/api/v1/promotions/{pk}/approve/", {}, format="json")
    assert own.status_code == 403 and "another approver" in own.json()["detail"]
    assert api(second_admin).post(f"/api/v1/promotions/{pk}/approve/", {}, format="json").json()["state"] == R.APPROVED


def test_both_admins_are_named_in_the_audit_trail(api, admin_user, second_admin, protected):
    change = (
        api(admin_user)
        .post(
            "/api/v1/environments/production/policy-changes/",
            {"required_approvals": 2, "reason": "two eyes"},
            format="json",
        )
        .json()
    )
    api(second_admin).post(f"/api/v1/environments/production/policy-changes/{change['id']}/confirm/")
    proposed = AuditEvent.objects.get(verb="environment.policy_change_proposed")
    confirmed = AuditEvent.objects.get(verb="environment.policy_change_confirmed")
    assert proposed.actor_name == "ari-admin" and proposed.after["proposed"] == {"required_approvals": 2}
    assert proposed.before == {"required_approvals": 1}
    assert confirmed.actor_name == "bea-admin"
    assert confirmed.after["proposed_by"] == "ari-admin" and confirmed.after["confirmed_by"] == "bea-admin"
    assert confirmed.before == {"required_approvals": 1} and confirmed.after["required_approvals"] == 2
    protected.refresh_from_db()
    assert protected.required_approvals == 2


def test_the_database_refuses_self_approval_on_a_protected_environment(protected):
    with pytest.raises(IntegrityError), transaction.atomic():
        Environment.objects.filter(pk=protected.pk).update(allow_self_approval=True)


def test_the_settings_page_refuses_self_approval_and_turns_policy_edits_into_a_proposal(
    browser_client, admin_user, protected, approver
):
    client = browser_client(admin_user)
    before = _policy(protected)
    refused = client.post("/environments/production/edit/", settings_form(protected, allow_self_approval="on"))
    assert refused.status_code == 400 and "cannot allow self-approval" in refused.content.decode()
    assert _policy(protected) == before and not PolicyChange.objects.exists()

    response = client.post(
        "/environments/production/edit/",
        settings_form(protected, required_approvals=0, request_ttl_hours=24, policy_reason="hotfix"),
    )
    assert response.status_code == 302
    protected.refresh_from_db()
    assert protected.required_approvals == 1 and protected.request_ttl_hours == 24  # TTL is not policy
    change = PolicyChange.objects.get()
    assert change.proposed == {"required_approvals": 0} and change.reason == "hotfix"
    page = client.get("/environments/production/").content.decode()
    assert "waits for a second admin" in page and "Withdraw" in page and "Confirm and apply" not in page


def test_a_second_admin_confirms_on_the_environment_page(browser_client, admin_user, second_admin, protected):
    browser_client(admin_user).post("/environments/production/edit/", settings_form(protected, required_approvals=3))
    change = PolicyChange.objects.get()
    client = browser_client(second_admin)
    assert "Confirm and apply" in client.get("/environments/production/").content.decode()
    assert client.post(f"/environments/production/policy-changes/{change.pk}/confirm/").status_code == 302
    protected.refresh_from_db()
    assert protected.required_approvals == 3
    change.refresh_from_db()
    assert change.state == PolicyChange.CONFIRMED and change.decided_by == second_admin


def test_unprotecting_also_needs_a_second_admin(api, admin_user, protected):
    response = api(admin_user).post(
        "/api/v1/environments/production/policy-changes/", {"protected": False}, format="json"
    )
    assert response.status_code == 201
    protected.refresh_from_db()
    assert protected.protected is True


def test_only_the_proposer_withdraws_and_one_change_waits_at_a_time(api, admin_user, second_admin, protected):
    pk = (
        api(admin_user)
        .post("/api/v1/environments/production/policy-changes/", {"required_approvals": 2}, format="json")
        .json()["id"]
    )
    second = api(second_admin).post(
        "/api/v1/environments/production/policy-changes/", {"required_approvals": 3}, format="json"
    )
    assert second.status_code == 409 and PolicyChange.objects.count() == 1
    assert api(second_admin).post(f"/api/v1/environments/production/policy-changes/{pk}/withdraw/").status_code == 403
    done = api(admin_user).post(f"/api/v1/environments/production/policy-changes/{pk}/withdraw/")
    assert done.status_code == 200 and done.json()["state"] == "withdrawn"
    again = api(second_admin).post(f"/api/v1/environments/production/policy-changes/{pk}/confirm/")
    assert again.status_code == 409
    assert protected.required_approvals == 1 and Environment.objects.get(pk=protected.pk).required_approvals == 1
    assert AuditEvent.objects.filter(verb="environment.policy_change_withdrawn", actor_name="ari-admin").exists()


def test_engineers_and_approvers_cannot_propose_or_confirm(api, engineer, approver, admin_user, protected):
    pk = (
        api(admin_user)
        .post("/api/v1/environments/production/policy-changes/", {"required_approvals": 0}, format="json")
        .json()["id"]
    )
    for user in (engineer, approver):
        assert (
            api(user)
            .post("/api/v1/environments/production/policy-changes/", {"required_approvals": 0}, format="json")
            .status_code
            == 403
        )
        assert api(user).post(f"/api/v1/environments/production/policy-changes/{pk}/confirm/").status_code == 403
    assert Environment.objects.get(pk=protected.pk).required_approvals == 1
    listed = api(engineer).get("/api/v1/environments/production/policy-changes/").json()
    assert [c["id"] for c in listed] == [pk]


def test_the_django_admin_shows_a_protected_policy_read_only(browser_client, django_user_model, protected):
    boss = django_user_model.objects.create_superuser("sue-super", password="pw-sue")
    client = browser_client(boss)
    before = _policy(protected)
    response = client.post(
        f"/admin/promotions/environment/{protected.pk}/change/",
        {
            "name": "production",
            "position": 2,
            "alias": "production",
            "required_approvals": 0,
            "allow_self_approval": "on",
            "request_ttl_hours": 12,
            "metric_thresholds": "[]",
        },
    )
    assert response.status_code == 302
    protected.refresh_from_db()
    assert protected.request_ttl_hours == 12  # saved, through environment_save
    assert _policy(protected) == before and not protected.allow_self_approval
    assert AuditEvent.objects.filter(verb="environment.updated", actor_name="sue-super").exists()


def test_a_superuser_outside_the_approver_group_cannot_approve(api, engineer, django_user_model, staging, iris):
    boss = django_user_model.objects.create_superuser("sue-super", password="pw-sue")
    pk = (
        api(engineer)
        .post(
            "/api/v1/promotions/",
            {"model": "iris", "version": 2, "environment": "staging", "justification": "j"},
            format="json",
        )
        .json()["id"]
    )
    refused = api(boss).post(f"/api/v1/promotions/{pk}/approve/", {}, format="json")
    assert refused.status_code == 403 and "approver group" in refused.json()["detail"]
    assert not Review.objects.exists() and R.objects.get(pk=pk).state == R.PENDING
