"""People in the loop on a canary (issue 17, item 6): promote now (the environment's
approvers) and abort (the requester or an approver), both audited and in the API, and the
rollout resource showing the canary's state."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from console.accounts.roles import APPROVER
from console.audit.models import AuditEvent
from deployer import services
from deployer.models import Rollout
from registry.promotions import canary_plan
from registry.promotions.models import PromotionRequest
from tests.canary_fixtures import PLAN
from tests.test_deployer_pages import approved_request, served  # noqa: F401 - served is a fixture

pytestmark = pytest.mark.django_db

ROLES = ["viewer", "engineer", "approver", "admin_user", "nobody"]


def held_canary(deployment, requester, approver, *, step=0, verdicts=(), steps_done=None) -> Rollout:
    """A canary of v1 beside the v2 that serves, held at ``step`` as the pipeline leaves it."""
    plan = canary_plan.parse({k: v for k, v in PLAN.items() if k != "strategy"})
    env = deployment.target.environment
    req = approved_request(
        deployment.model, deployment.model.versions.get(version=1), env, requester, approver, state="deploying"
    )
    PromotionRequest.objects.filter(pk=req.pk).update(plan=PLAN)
    steps = services.canary_steps_for(plan)
    done = steps_done if steps_done is not None else 5 + step
    for row in steps[:done]:
        row["state"] = "done"
    steps[done]["state"] = "running"
    now = timezone.now()
    started = now - timedelta(seconds=60)
    until = started + timedelta(seconds=plan.steps[step].seconds)
    return Rollout.objects.create(
        deployment=deployment,
        revision=deployment.rollouts.count() + 1,
        version=deployment.model.versions.get(version=1),
        request=req,
        state=Rollout.RUNNING,
        strategy="canary",
        steps=steps,
        restore_to=deployment.live_rollout,
        started_at=now - timedelta(minutes=3),
        next_check_at=until,
        canary={
            "plan": plan.to_dict(),
            "step": step,
            "weight": plan.steps[step].weight,
            "objects": [],
            "step_started_at": started.isoformat(),
            "hold_until": until.isoformat(),
            "check_at": until.isoformat(),
            "waiting": None,
            "verdicts": list(verdicts),
            "decision": None,
        },
    )


@pytest.fixture
def held(served, engineer, approver):
    return held_canary(served, engineer, approver)


VERDICT = {
    "step": 0,
    "weight": 10,
    "result": "pass",
    "passed": True,
    "reason": "canary error rate 0.0 % (0/120) ≤ stable 0.0 % (0/480) + 1.0 pp",
    "numbers": {
        "stable": {"requests": 480, "errors": 0, "error_rate_pct": 0.0, "p95_ms": 10.0},
        "canary": {"requests": 120, "errors": 0, "error_rate_pct": 0.0, "p95_ms": 11.0},
    },
    "window_start": "2026-11-30T10:00:00+00:00",
    "window_end": "2026-11-30T10:05:00+00:00",
    "at": "2026-11-30T10:05:00+00:00",
}


# --- who may ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    "action, body, allowed",
    [
        ("promote", None, {"approver"}),  # the requester (engineer) is not an approver
        ("abort", {"reason": "looks wrong"}, {"engineer", "approver"}),  # the requester or an approver
    ],
)
def test_who_may_promote_a_canary_early_or_abort_it(request, api, held, role, action, body, allowed):
    user = request.getfixturevalue(role)
    response = api(user).post(f"/api/v1/rollouts/{held.pk}/{action}/", body, format="json")
    held.refresh_from_db()
    if role in allowed:
        assert response.status_code == 202, response.json()
        assert held.canary["decision"]["action"] == action and held.canary["decision"]["actor"] == user.username
        assert response.json()["canary"]["decision"]["actor"] == user.username
    else:
        assert response.status_code == 403, response.json()
        assert held.canary["decision"] is None
        detail = response.json()["detail"]
        if role == "nobody":
            assert "permission" in detail
        elif action == "promote":
            assert detail == "Only members of the approver group may promote a canary in staging early."
        else:
            assert detail == "Only the requester or an approver of staging may abort this canary."


def test_a_requester_who_is_also_an_approver_may_abort_but_not_promote_their_own_canary(
    api, served, engineer, approver
):
    engineer.groups.add(Group.objects.get(name=APPROVER))
    rollout = held_canary(served, engineer, approver)

    response = api(engineer).post(f"/api/v1/rollouts/{rollout.pk}/promote/")
    assert response.status_code == 403
    assert response.json()["detail"] == "You requested this promotion; another approver must promote its canary early."
    assert api(engineer).post(f"/api/v1/rollouts/{rollout.pk}/abort/").status_code == 202


# --- what is refused ----------------------------------------------------------------------


def test_a_rollout_that_is_no_canary_cannot_be_promoted_early(api, served, approver):
    response = api(approver).post(f"/api/v1/rollouts/{served.live_rollout_id}/promote/")
    assert response.status_code == 409
    assert response.json()["detail"] == "Revision 3 is not a canary; it goes out all at once."


def test_a_canary_decided_once_is_not_decided_again(api, held, approver, engineer):
    assert api(engineer).post(f"/api/v1/rollouts/{held.pk}/abort/").status_code == 202
    response = api(approver).post(f"/api/v1/rollouts/{held.pk}/promote/")
    assert response.status_code == 409
    assert response.json()["detail"] == f"Revision {held.revision} was already aborted by eli-engineer."
    assert AuditEvent.objects.filter(verb__startswith="rollout.canary_").count() == 1


def test_a_canary_being_promoted_can_no_longer_be_aborted(api, served, engineer, approver):
    rollout = held_canary(served, engineer, approver, step=1, steps_done=7)  # promote_apply running
    response = api(engineer).post(f"/api/v1/rollouts/{rollout.pk}/abort/")
    assert response.status_code == 409
    assert "has left its canary steps" in response.json()["detail"]


def test_a_finished_canary_cannot_be_aborted(api, held, engineer):
    Rollout.objects.filter(pk=held.pk).update(state=Rollout.LIVE, next_check_at=None)
    response = api(engineer).post(f"/api/v1/rollouts/{held.pk}/abort/")
    assert response.status_code == 409
    assert response.json()["detail"] == f"Revision {held.revision} is live; its canary is over."


def test_a_missing_rollout_is_404(api, approver):
    assert api(approver).post("/api/v1/rollouts/99999/promote/").status_code == 404


def test_an_abort_reason_longer_than_10000_characters_is_refused(api, held, engineer):
    response = api(engineer).post(f"/api/v1/rollouts/{held.pk}/abort/", {"reason": "x" * 10001}, format="json")
    assert response.status_code == 400 and "reason" in response.json()["fields"]


# --- the decision, audited and queued -----------------------------------------------------


def test_an_abort_is_audited_in_its_transaction_and_queues_the_waiting_canary_at_once(
    held, engineer, sent_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.canary_abort(rollout_id=held.pk, actor=engineer, reason="  latency looks odd  ")
    held.refresh_from_db()
    assert held.next_check_at <= timezone.now()  # due now, so the controller takes it too
    assert sent_tasks == [("deployer.run_rollout", [held.pk])]
    event = AuditEvent.objects.get(verb="rollout.canary_abort")
    assert event.actor_name == "eli-engineer" and event.object_id == str(held.pk)
    assert event.before == {"step": 0, "weight": 10}
    assert event.after == {"decision": "abort", "reason": "latency looks odd"}


# --- the rollout resource -----------------------------------------------------------------


def test_the_rollout_resource_shows_the_plan_step_weight_time_left_and_verdicts(api, served, engineer, approver):
    rollout = held_canary(served, engineer, approver, step=1, verdicts=[VERDICT])
    body = api(engineer).get(f"/api/v1/rollouts/{rollout.pk}/").json()

    assert body["strategy"] == "canary"
    canary = body["canary"]
    assert canary["description"] == "10 % for 5 min, then 50 % for 10 min, then all"
    assert canary["plan"] == {k: v for k, v in PLAN.items() if k != "strategy"}
    assert (canary["step"], canary["steps_total"], canary["weight"]) == (2, 2, 50)
    assert 530 < canary["seconds_left"] <= 540  # a 600 s step that began a minute ago
    [verdict] = canary["verdicts"]
    assert verdict["step"] == 1 and verdict["result"] == "pass" and verdict["passed"] is True
    assert verdict["numbers"] == VERDICT["numbers"] and verdict["reason"] == VERDICT["reason"]
    assert canary["decision"] is None and canary["waiting"] is None
    assert [s["name"] for s in body["steps"]][5:7] == ["canary_step_0", "canary_step_1"]
    assert body["steps"][6]["title"] == "Canary step 2: 50 % for 10 min"


def test_an_all_at_once_rollout_has_no_canary_state(api, served, viewer):
    body = api(viewer).get(f"/api/v1/rollouts/{served.live_rollout_id}/").json()
    assert body["strategy"] == "all_at_once" and body["canary"] is None
    row = api(viewer).get(f"/api/v1/deployments/{served.pk}/rollouts/").json()["results"][0]
    assert row["strategy"] == "all_at_once"


def test_the_openapi_schema_documents_promote_and_abort(api, viewer):
    schema = api(viewer).get("/api/v1/schema/?format=json").json()
    for action in ("promote", "abort"):
        operation = schema["paths"][f"/api/v1/rollouts/{{id}}/{action}/"]["post"]
        assert {"202", "403", "404", "409"} <= set(operation["responses"])
    detail = schema["components"]["schemas"]["RolloutDetail"]["properties"]
    assert "canary" in detail and "strategy" in detail
    assert "verdicts" in schema["components"]["schemas"]["Canary"]["properties"]
