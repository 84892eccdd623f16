"""An environment's rollout strategy and canary plan (issue 17) are policy: set on the settings
page, in the Django admin and through policy changes in the API, refused with the field named
when wrong, and on a protected environment applied only once a second admin confirms."""

import pytest

from console.audit.models import AuditEvent
from registry.promotions.models import Environment, PolicyChange
from tests.canary_fixtures import PLAN as REQUEST_PLAN
from tests.promotion_fixtures import settings_form

pytestmark = pytest.mark.django_db

# The environment keeps the steps and analysis; a request's snapshot adds the strategy.
PLAN = {key: value for key, value in REQUEST_PLAN.items() if key != "strategy"}


def test_every_environment_starts_all_at_once_with_no_plan(staging):
    assert staging.rollout_strategy == "all_at_once" and staging.canary_plan == {}


def test_an_admin_sets_a_canary_on_the_settings_page_and_every_environment_page_shows_it(
    browser_client, admin_user, viewer, staging
):
    client = browser_client(admin_user)
    form = client.get("/environments/staging/edit/").content.decode()
    assert "Rollout strategy" in form and "Canary steps" in form
    response = client.post(
        "/environments/staging/edit/",
        settings_form(staging, rollout_strategy="canary", canary_steps="10 % for 5 min\n\n50% for 10 min\n"),
    )
    assert response.status_code == 302, response.content.decode()
    staging.refresh_from_db()
    assert staging.rollout_strategy == "canary" and staging.canary_plan == PLAN
    event = AuditEvent.objects.get(verb="environment.updated")
    assert event.before == {"rollout_strategy": "all_at_once", "canary_plan": {}}
    assert event.after == {"rollout_strategy": "canary", "canary_plan": PLAN}

    again = client.get("/environments/staging/edit/").content.decode()
    assert "10 % for 5 min\n50 % for 10 min</textarea>" in again

    words = "10 % for 5 min, then 50 % for 10 min, then all; judged on at least 100 canary requests per step"
    client = browser_client(viewer)
    for page in ("/environments/", "/environments/staging/"):
        assert words in client.get(page).content.decode(), page


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        (
            {"canary_steps": "10 % for 5 min\n10 % for 10 min"},
            "canary_steps",
            "Line 2 “10 % for 10 min”: weight must be greater than the step before (10).",
        ),
        ({"canary_steps": "10 % for 5 min\nhalf for a while"}, "canary_steps", "Line 2 “half for a while”: write"),
        ({"canary_steps": "10 % for 2 s"}, "canary_steps", "Line 1 “10 % for 2 s”: seconds must be from 5 to"),
        ({"canary_steps": ""}, "canary_steps", "A canary rollout needs at least one step, e.g. 10 % for 5 min."),
        (
            {"canary_steps": "10 % for 5 min", "canary_max_p95_ratio": "0.5"},
            "canary_max_p95_ratio",
            "Must be at least 1 and at most 1000, not 0.5.",
        ),
        ({"canary_steps": "10 % for 5 min", "canary_min_requests": "0"}, "canary_min_requests", "Must be from 1"),
    ],
)
def test_a_bad_plan_on_the_settings_page_is_refused_under_its_field(
    browser_client, admin_user, staging, changes, field, message
):
    response = browser_client(admin_user).post(
        "/environments/staging/edit/", settings_form(staging, rollout_strategy="canary", **changes)
    )
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert list(errors) == [field] and errors[field][0].startswith(message), errors
    staging.refresh_from_db()
    assert staging.rollout_strategy == "all_at_once" and staging.canary_plan == {}


def test_saving_other_settings_leaves_the_plan_and_an_old_style_post_keeps_the_strategy(
    browser_client, admin_user, staging
):
    Environment.objects.filter(pk=staging.pk).update(rollout_strategy="canary", canary_plan=PLAN)
    staging.refresh_from_db()
    client = browser_client(admin_user)
    data = settings_form(staging, canary_steps="10 % for 5 min\n50 % for 10 min", request_ttl_hours=12)
    del data["rollout_strategy"]  # a script written before canaries
    assert client.post("/environments/staging/edit/", data).status_code == 302
    staging.refresh_from_db()
    assert staging.request_ttl_hours == 12
    assert staging.rollout_strategy == "canary" and staging.canary_plan == PLAN


def test_on_a_protected_environment_a_canary_waits_for_a_second_admin(
    browser_client, admin_user, second_admin, protected
):
    response = browser_client(admin_user).post(
        "/environments/production/edit/",
        settings_form(
            protected, rollout_strategy="canary", canary_steps="10 % for 5 min\n50 % for 10 min", policy_reason="safer"
        ),
    )
    assert response.status_code == 302, response.content.decode()
    protected.refresh_from_db()
    assert protected.rollout_strategy == "all_at_once" and protected.canary_plan == {}
    change = PolicyChange.objects.get()
    assert change.proposed == {"rollout_strategy": "canary", "canary_plan": PLAN}

    client = browser_client(second_admin)
    page = client.get("/environments/production/").content.decode()
    assert "waits for a second admin" in page
    assert "<strong>10 % for 5 min, then 50 % for 10 min, then all; judged on" in page  # the plan in words
    assert client.post(f"/environments/production/policy-changes/{change.pk}/confirm/").status_code == 302
    protected.refresh_from_db()
    assert protected.rollout_strategy == "canary" and protected.canary_plan == PLAN


def test_a_policy_change_through_the_api_names_the_field_of_a_bad_plan(api, admin_user, second_admin, protected):
    client = api(admin_user)
    url = "/api/v1/environments/production/policy-changes/"
    bad = {"steps": [{"weight": 10, "seconds": 300}, {"weight": 10, "seconds": 600}]}
    refused = client.post(url, {"rollout_strategy": "canary", "canary_plan": bad}, format="json")
    assert refused.status_code == 400
    assert refused.json()["fields"]["canary_plan"] == [
        "canary_plan.steps[1].weight: must be greater than the step before (10)"
    ]
    no_plan = client.post(url, {"rollout_strategy": "canary"}, format="json")
    assert no_plan.status_code == 400
    assert no_plan.json()["fields"]["canary_plan"][0].startswith("canary_plan: a canary rollout needs a plan")
    unknown = client.post(url, {"rollout_strategy": "linear"}, format="json")
    assert unknown.status_code == 400 and "rollout_strategy" in unknown.json()["fields"]
    for junk in ("steps", [1, 2], 7):
        assert client.post(url, {"canary_plan": junk}, format="json").status_code == 400
    assert not PolicyChange.objects.exists()

    proposed = client.post(url, {"rollout_strategy": "canary", "canary_plan": {"steps": PLAN["steps"]}}, format="json")
    assert proposed.status_code == 201 and proposed.json()["proposed"]["canary_plan"] == PLAN
    assert api(admin_user).post(f"{url}{proposed.json()['id']}/confirm/").status_code == 403  # not the proposer
    assert api(second_admin).post(f"{url}{proposed.json()['id']}/confirm/").status_code == 200
    listed = {e["name"]: e for e in api(admin_user).get("/api/v1/environments/").json()}
    assert listed["production"]["rollout_strategy"] == "canary" and listed["production"]["canary_plan"] == PLAN


def test_the_django_admin_edits_the_plan_through_the_same_checks(browser_client, django_user_model, staging):
    boss = django_user_model.objects.create_superuser("sue-super", password="pw-sue")
    client = browser_client(boss)
    data = {
        "name": "staging",
        "position": 1,
        "alias": "staging",
        "required_approvals": 1,
        "request_ttl_hours": 72,
        "metric_thresholds": "[]",
        "rollout_strategy": "canary",
        "canary_plan": '{"steps": [{"weight": 50, "seconds": 60}, {"weight": 20, "seconds": 60}]}',
    }
    refused = client.post(f"/admin/promotions/environment/{staging.pk}/change/", data)
    assert refused.status_code == 200
    assert "canary_plan.steps[1].weight: must be greater than the step before (50)" in refused.content.decode()
    staging.refresh_from_db()
    assert staging.rollout_strategy == "all_at_once"

    data["canary_plan"] = '{"steps": [{"weight": 10, "seconds": 300}, {"weight": 50, "seconds": 600}]}'
    assert client.post(f"/admin/promotions/environment/{staging.pk}/change/", data).status_code == 302
    staging.refresh_from_db()
    assert staging.rollout_strategy == "canary" and staging.canary_plan == PLAN
    assert AuditEvent.objects.filter(verb="environment.updated", actor_name="sue-super").exists()


def test_the_django_admin_shows_a_protected_environments_rollout_read_only(
    browser_client, django_user_model, protected
):
    boss = django_user_model.objects.create_superuser("sue-super", password="pw-sue")
    response = browser_client(boss).post(
        f"/admin/promotions/environment/{protected.pk}/change/",
        {
            "name": "production",
            "position": 2,
            "alias": "production",
            "request_ttl_hours": 12,
            "rollout_strategy": "canary",
            "canary_plan": '{"steps": [{"weight": 10, "seconds": 300}]}',
        },
    )
    assert response.status_code == 302
    protected.refresh_from_db()
    assert protected.request_ttl_hours == 12
    assert protected.rollout_strategy == "all_at_once" and protected.canary_plan == {}
