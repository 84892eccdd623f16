"""A promotion request carries the rollout plan it was made under (issue 17): the page and the
API show it, approving approves it, and a later policy change leaves it as it is. Rollbacks,
redeploys and undeploys always go all at once, and say so."""

import pytest

from console.audit.models import AuditEvent
from registry.promotions import services
from registry.promotions.models import Environment, PromotionRequest

pytestmark = pytest.mark.django_db
R = PromotionRequest

STEPS = [{"weight": 10, "seconds": 300}, {"weight": 50, "seconds": 600}]
WORDS = (
    "canary, 10 % for 5 min, then 50 % for 10 min, then all; judged on at least 100 canary requests per step: "
    "error rate at most stable&#x27;s + 1.0 pp, p95 at most 1.5 × stable&#x27;s; with fewer, the step waits for more"
)


@pytest.fixture
def canary_staging(staging):
    services.environment_save(
        actor="setup",
        environment=Environment(
            pk=staging.pk,
            name="staging",
            position=1,
            alias="staging",
            required_approvals=1,
            rollout_strategy="canary",
            canary_plan={"steps": STEPS},
        ),
        metric_thresholds=[],
    )
    staging.refresh_from_db()
    return staging


def _request(actor, model, env, kind=R.PROMOTE, number=2):
    return services.promotion_request(
        actor=actor, version=model.versions.get(version=number), environment=env, justification="why", kind=kind
    )


def test_a_request_under_a_canary_policy_carries_the_whole_plan(engineer, iris, canary_staging):
    req = _request(engineer, iris, canary_staging)
    assert req.plan["strategy"] == "canary" and req.plan["steps"] == STEPS
    assert req.plan["analysis"]["min_requests"] == 100 and req.plan["analysis"]["inconclusive"] == "wait"
    assert AuditEvent.objects.get(verb="promotion.requested").after["plan"] == req.plan


def test_an_all_at_once_request_says_so(engineer, iris, staging):
    req = _request(engineer, iris, staging)
    assert req.plan == {"strategy": "all_at_once"}
    assert req.plan_description == "all at once"


def test_a_rollback_goes_all_at_once_under_a_canary_policy_and_says_why(engineer, iris, canary_staging):
    req = _request(engineer, iris, canary_staging, kind=R.ROLLBACK, number=1)
    assert req.plan == {
        "strategy": "all_at_once",
        "reason": "a rollback returns at once to a version that served before",
    }
    for kind in (R.REDEPLOY, R.UNDEPLOY):
        other = _request(engineer, iris, canary_staging, kind=kind)
        assert other.plan["strategy"] == "all_at_once" and other.plan["reason"]


def test_the_snapshot_stays_when_the_policy_changes_afterwards(
    browser_client, api, engineer, approver, admin_user, iris, canary_staging
):
    req = _request(engineer, iris, canary_staging)
    snapshot = dict(req.plan)
    response = browser_client(admin_user).post(
        "/environments/staging/edit/",
        {
            "name": "staging",
            "position": 1,
            "alias": "staging",
            "required_approvals": 1,
            "request_ttl_hours": 72,
            "require_previous": "on",
            "rollout_strategy": "canary",
            "canary_steps": "25 % for 1 min",
        },
    )
    assert response.status_code == 302, response.content.decode()
    canary_staging.refresh_from_db()
    assert canary_staging.canary_plan["steps"] == [{"weight": 25, "seconds": 60}]

    req.refresh_from_db()
    assert req.plan == snapshot
    page = browser_client(approver).get(f"/promotions/{req.pk}/").content.decode()
    assert "Rollout plan:</strong> " + WORDS in page and "25 % for 1 min" not in page
    approved = api(approver).post(f"/api/v1/promotions/{req.pk}/approve/", {}, format="json").json()
    assert approved["state"] == R.APPROVED and approved["plan"] == snapshot  # what was approved
    assert R.objects.get(pk=req.pk).plan == snapshot


def test_the_request_page_shows_the_plan_and_the_approve_form_says_it_is_approved(
    browser_client, engineer, approver, iris, canary_staging
):
    req = _request(engineer, iris, canary_staging)
    html = browser_client(approver).get(f"/promotions/{req.pk}/").content.decode()
    assert '<section class="card" id="rollout-plan">' in html
    assert "<strong>Rollout plan:</strong> " + WORDS + "." in html
    assert "Approving approves the rollout plan: " + WORDS + "." in html
    own = browser_client(engineer).get(f"/promotions/{req.pk}/").content.decode()
    assert "Rollout plan:</strong> canary, 10 % for 5 min" in own
    assert "Approving approves" not in own  # the requester cannot approve


def test_the_api_resource_shows_the_plan_and_its_summary(api, engineer, iris, canary_staging, staging):
    created = api(engineer).post(
        "/api/v1/promotions/",
        {"model": "iris", "version": 2, "environment": "staging", "justification": "why"},
        format="json",
    )
    assert created.status_code == 201
    body = api(engineer).get(f"/api/v1/promotions/{created.json()['id']}/").json()
    assert body["plan"]["strategy"] == "canary" and body["plan"]["steps"] == STEPS
    assert body["plan_summary"].startswith("10 % for 5 min, then 50 % for 10 min, then all; judged on at least 100")
    listed = api(engineer).get("/api/v1/promotions/").json()["results"]
    assert listed[0]["plan"] == body["plan"]


def test_the_openapi_schema_describes_the_plan(browser_client, viewer):
    schema = browser_client(viewer).get("/api/v1/schema/").content.decode()
    assert "RequestPlan:" in schema and "plan_summary:" in schema
    assert "max_error_rate_increase_pp:" in schema and "rollout_strategy:" in schema
