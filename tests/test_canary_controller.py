"""A canary rollout as a state machine driven by a controller (issue 17, items 4 and 5): it
sets each step's weight, holds without holding a worker, judges the step's window, records
the verdict once, and promotes or restores; a worker that dies anywhere is replaced without
a step skipped or repeated. The clock is the test's, the backend a stand-in that behaves as
CANARY.md says (tests/canary_fixtures.py); everything else is real."""

from datetime import timedelta

import pytest
from django.utils import timezone

from console.audit.models import AuditEvent
from deployer import services
from deployer.canary.analysis import TrackWindow
from deployer.models import Rollout
from deployer.tasks import reconcile_canaries, resume_rollouts
from registry.promotions.models import PromotionRequest
from tests.canary_fixtures import (  # noqa: F401 - backend, clock and traffic are fixtures
    PLAN,
    backend,
    clock,
    plan,
    promote,
    step_states,
    time_passes,
    traffic,
)

pytestmark = pytest.mark.django_db(transaction=True)

CANARY_STEPS = [
    "gates",
    "export",
    "canary_apply",
    "canary_wait",
    "canary_verify",
    "canary_step_0",
    "canary_step_1",
    "promote_apply",
    "promote_wait",
    "promote_verify",
    "canary_end",
    "alias",
]


class Killed(BaseException):
    """The worker process dies here: nothing in the pipeline catches it (as with SIGKILL)."""


@pytest.fixture
def live_v1(engineer, approver, iris, staging_local, sent_tasks, backend):
    """iris v1 serves in staging, deployed all at once."""
    req = promote(engineer, approver, iris.versions.get(version=1), staging_local.environment, sent_tasks)
    assert req.state == PromotionRequest.LIVE, req.state_reason
    return req


@pytest.fixture
def canary(engineer, approver, iris, staging_local, sent_tasks, live_v1, traffic, clock):
    """canary(plan) -> (request, rollout) for iris v2 with that plan, held at its first step."""

    def start(with_plan=PLAN):
        req = promote(
            engineer, approver, iris.versions.get(version=2), staging_local.environment, sent_tasks, with_plan=with_plan
        )
        return req, Rollout.objects.get(request=req)

    return start


def _alias(mlflow_store) -> str:
    return str(mlflow_store.client().get_model_version_by_alias("iris", "staging").version)


def _verbs(rollout) -> list[str]:
    return list(
        AuditEvent.objects.filter(object_type="deployer.rollout", object_id=str(rollout.pk))
        .order_by("id")
        .values_list("verb", flat=True)
    )


def test_a_good_canary_goes_step_by_step_and_moves_the_alias_only_at_the_end(
    canary, backend, clock, sent_tasks, mlflow_store, traffic, settings
):
    req, rollout = canary()

    # Held at its first step: running (one rollout per deployment), but no worker holds it.
    assert [s["name"] for s in rollout.steps] == CANARY_STEPS
    assert rollout.strategy == "canary" and rollout.state == Rollout.RUNNING
    assert rollout.worker == "" and rollout.heartbeat_at is None
    states = step_states(rollout)
    assert all(states[name] == "done" for name in CANARY_STEPS[:5]) and states["canary_step_0"] == "running"
    assert (rollout.canary["step"], rollout.canary["weight"]) == (0, 10)
    started = timezone.datetime.fromisoformat(rollout.canary["step_started_at"])
    assert rollout.next_check_at == started + timedelta(seconds=300)
    assert backend.canary == (2, 10) and backend.stable == 1
    assert req.state == PromotionRequest.DEPLOYING and _alias(mlflow_store) == "1"
    first_start = rollout.started_at

    # Nothing is due yet; the lease logic does not mistake the wait for a dead worker.
    clock.advance(settings.DEPLOYER_LEASE_SECONDS + 60)
    assert reconcile_canaries() == [] and resume_rollouts() == []
    assert services.rollout_claim(rollout_id=rollout.pk, worker="someone") is None

    rollout = time_passes(clock, rollout, sent_tasks)
    assert step_states(rollout)["canary_step_0"] == "done" and step_states(rollout)["canary_step_1"] == "running"
    assert (rollout.canary["step"], rollout.canary["weight"]) == (1, 50) and backend.canary == (2, 50)
    [verdict] = rollout.canary["verdicts"]
    assert verdict["result"] == "pass" and verdict["passed"] and verdict["weight"] == 10
    assert verdict["numbers"]["canary"] == {"requests": 120, "errors": 0, "error_rate_pct": 0.0, "p95_ms": 11.0}
    assert verdict["numbers"]["stable"]["requests"] == 480
    # The window judged is the step's own: from when its weight took effect to the check.
    (_, start, end), (_, start2, _) = traffic.asked
    assert start == start2 == started and end - start >= timedelta(seconds=300)
    assert _alias(mlflow_store) == "1"

    rollout = time_passes(clock, rollout, sent_tasks)
    req.refresh_from_db()
    assert rollout.state == Rollout.LIVE, rollout.reason
    assert all(state == "done" for state in step_states(rollout).values())
    assert [v["step"] for v in rollout.canary["verdicts"]] == [0, 1] and rollout.canary["weight"] == 100
    assert req.state == PromotionRequest.LIVE and _alias(mlflow_store) == "2"
    # Stable traffic never stopped: v1 stayed stable until v2 replaced it, then the canary went.
    assert backend.log[-5:] == [("stable", 1), ("weight", 10), ("weight", 50), ("stable", 2), ("canary_end", 2)]
    assert backend.canary is None and backend.stable == 2
    # Waiting between checks was neither an attempt nor a resumption.
    assert rollout.attempts == 1 and rollout.started_at == first_start and rollout.next_check_at is None
    assert _verbs(rollout) == [
        "rollout.created",
        "rollout.started",
        "rollout.canary_step_passed",
        "rollout.canary_step_passed",
        "rollout.live",
    ]


def test_a_canary_that_answers_errors_is_rolled_back_at_its_first_step_quoting_both_error_rates(
    canary, backend, clock, sent_tasks, mlflow_store, traffic
):
    traffic["canary"] = TrackWindow(requests=50, errors=21, p95_ms=12.0)
    req, rollout = canary(plan(min_requests=20))

    rollout = time_passes(clock, rollout, sent_tasks)
    req.refresh_from_db()

    assert rollout.state == Rollout.ROLLED_BACK and req.state == PromotionRequest.ROLLED_BACK
    for text in (rollout.reason, req.state_reason):
        assert "canary error rate 42.0 % (21/50) > stable 0.0 % (0/480) + 1.0 pp" in text
        assert "Revision 1 (v1) serves again" in text
    states = step_states(rollout)
    assert states["canary_step_0"] == "failed" and states["restore_canary_end"] == "done"
    assert {states[n] for n in CANARY_STEPS[6:]} == {"skipped"}
    [verdict] = rollout.canary["verdicts"]
    assert verdict["result"] == "fail" and not verdict["passed"]
    assert verdict["numbers"]["canary"]["errors"] == 21
    # All traffic is back on v1, which never stopped serving; the alias never moved.
    assert backend.log[-2:] == [("weight", 10), ("canary_end", 1)] and backend.stable == 1
    assert _alias(mlflow_store) == "1"
    assert "rollout.canary_step_failed" in _verbs(rollout)


def test_a_slow_canary_fails_on_its_p95_against_stable(canary, clock, sent_tasks, traffic):
    traffic["canary"] = TrackWindow(requests=200, errors=0, p95_ms=40.0)
    _, rollout = canary()

    rollout = time_passes(clock, rollout, sent_tasks)

    assert rollout.state == Rollout.ROLLED_BACK
    assert "canary p95 40 ms > 1.5 × stable 10 ms" in rollout.reason


def test_an_inconclusive_step_waits_for_traffic_when_the_plan_says_wait(canary, clock, sent_tasks, traffic, settings):
    traffic["canary"] = TrackWindow(requests=12, errors=0, p95_ms=None)
    _, rollout = canary()

    rollout = time_passes(clock, rollout, sent_tasks)

    assert step_states(rollout)["canary_step_0"] == "running" and rollout.canary["verdicts"] == []
    assert "12 requests, fewer than the 100" in rollout.canary["waiting"]["reason"]
    assert rollout.next_check_at is not None and rollout.worker == ""
    # More traffic arrives; the window still starts where the step did.
    traffic["canary"] = TrackWindow(requests=130, errors=0, p95_ms=11.0)
    rollout = time_passes(clock, rollout, sent_tasks)
    [verdict] = rollout.canary["verdicts"]
    assert verdict["result"] == "pass" and rollout.canary["waiting"] is None
    assert verdict["window_start"] == rollout.canary["verdicts"][0]["window_start"]
    assert step_states(rollout)["canary_step_1"] == "running"


@pytest.mark.parametrize(
    "inconclusive, state, result", [("pass", Rollout.LIVE, "passes"), ("fail", Rollout.ROLLED_BACK, "fails")]
)
def test_an_inconclusive_step_passes_or_fails_as_the_plan_says(
    canary, clock, sent_tasks, traffic, inconclusive, state, result
):
    traffic["canary"] = TrackWindow(requests=3, errors=0, p95_ms=None)
    _, rollout = canary(plan(inconclusive=inconclusive))

    rollout = time_passes(clock, rollout, sent_tasks)
    if inconclusive == "pass":
        rollout = time_passes(clock, rollout, sent_tasks)

    assert rollout.state == state
    verdict = rollout.canary["verdicts"][0]
    assert verdict["result"] == "inconclusive" and verdict["passed"] is (inconclusive == "pass")
    assert f"; the plan {result} an inconclusive step" in verdict["reason"]


# --- a worker that dies ------------------------------------------------------------------


def _expire_lease(clock, settings) -> None:
    clock.advance(settings.DEPLOYER_LEASE_SECONDS + 1)


def test_a_worker_killed_while_setting_a_steps_weight_is_replaced_and_the_step_goes_on(
    canary, backend, clock, sent_tasks, settings, monkeypatch
):
    _, rollout = canary()
    real_wait = backend.wait

    def dies_once(objects, **kwargs):
        if objects[0]["spec"].get("weight") == 50:
            backend.wait = real_wait
            raise Killed
        return real_wait(objects, **kwargs)

    backend.wait = dies_once
    rollout.refresh_from_db()
    clock.advance((rollout.next_check_at - timezone.now()).total_seconds() + 1)
    assert reconcile_canaries() == [rollout.pk]
    with pytest.raises(Killed):
        sent_tasks.run_all()
    sent_tasks.clear()  # the killed worker's message is gone with it

    rollout.refresh_from_db()
    assert rollout.state == Rollout.RUNNING and rollout.worker != "" and rollout.next_check_at is None
    assert step_states(rollout)["canary_step_1"] == "running"
    assert rollout.canary["weight"] == 10  # 50 was asked for, not yet in effect
    step_1_started = next(s for s in rollout.steps if s["name"] == "canary_step_1")["started_at"]

    _expire_lease(clock, settings)
    assert resume_rollouts() == [rollout.pk]
    sent_tasks.run_all()

    rollout.refresh_from_db()
    assert step_states(rollout)["canary_step_1"] == "running" and rollout.canary["weight"] == 50
    assert next(s for s in rollout.steps if s["name"] == "canary_step_1")["started_at"] == step_1_started
    assert [v["step"] for v in rollout.canary["verdicts"]] == [0]  # step 0 was not judged again
    assert rollout.attempts == 2 and rollout.next_check_at is not None
    rollout = time_passes(clock, rollout, sent_tasks)
    assert rollout.state == Rollout.LIVE
    assert [v["step"] for v in rollout.canary["verdicts"]] == [0, 1]
    assert _verbs(rollout).count("rollout.canary_step_passed") == 2
    assert _verbs(rollout).count("rollout.resumed") == 1


def test_a_worker_killed_right_after_recording_a_verdict_does_not_record_or_announce_it_twice(
    canary, backend, clock, sent_tasks, settings, monkeypatch
):
    _, rollout = canary()
    real = services.rollout_canary_verdict
    calls = []

    def records_then_dies(**kwargs):
        calls.append(kwargs["verdict"]["step"])
        recorded = real(**kwargs)
        if len(calls) == 1:
            raise Killed
        return recorded

    monkeypatch.setattr(services, "rollout_canary_verdict", records_then_dies)
    rollout.refresh_from_db()
    clock.advance((rollout.next_check_at - timezone.now()).total_seconds() + 1)
    reconcile_canaries()
    with pytest.raises(Killed):
        sent_tasks.run_all()
    sent_tasks.clear()
    rollout.refresh_from_db()
    assert [v["step"] for v in rollout.canary["verdicts"]] == [0]
    assert step_states(rollout)["canary_step_0"] == "running"

    _expire_lease(clock, settings)
    resume_rollouts()
    sent_tasks.run_all()

    rollout.refresh_from_db()
    assert calls == [0]  # the resumed step found its verdict and went on; it was not judged again
    assert step_states(rollout)["canary_step_0"] == "done" and step_states(rollout)["canary_step_1"] == "running"
    assert _verbs(rollout).count("rollout.canary_step_passed") == 1
    assert len(rollout.canary["verdicts"]) == 1


def test_a_worker_killed_during_the_promotion_is_replaced_and_the_canary_ends_live(
    canary, backend, clock, sent_tasks, settings, mlflow_store
):
    _, rollout = canary()
    rollout = time_passes(clock, rollout, sent_tasks)
    real_apply = backend.apply

    def dies_once(objects, **kwargs):
        if objects[0]["kind"] == "Server":
            backend.apply = real_apply
            raise Killed
        return real_apply(objects, **kwargs)

    backend.apply = dies_once
    clock.advance((rollout.next_check_at - timezone.now()).total_seconds() + 1)
    reconcile_canaries()
    with pytest.raises(Killed):
        sent_tasks.run_all()
    sent_tasks.clear()
    assert step_states(Rollout.objects.get(pk=rollout.pk))["promote_apply"] == "running"

    _expire_lease(clock, settings)
    resume_rollouts()
    sent_tasks.run_all()

    rollout.refresh_from_db()
    assert rollout.state == Rollout.LIVE and _alias(mlflow_store) == "2"
    assert [v["step"] for v in rollout.canary["verdicts"]] == [0, 1]


# --- people in the loop ------------------------------------------------------------------


def test_an_approver_promotes_a_canary_early_and_its_remaining_steps_are_skipped(
    canary, backend, clock, sent_tasks, approver, mlflow_store
):
    req, rollout = canary()

    services.canary_promote_now(rollout_id=rollout.pk, actor=approver)
    sent_tasks.run_all()  # queued at once, not at the step's end

    rollout.refresh_from_db()
    req.refresh_from_db()
    assert rollout.state == Rollout.LIVE and req.state == PromotionRequest.LIVE and _alias(mlflow_store) == "2"
    steps = {s["name"]: s for s in rollout.steps}
    for name in ("canary_step_0", "canary_step_1"):
        assert steps[name]["state"] == "skipped"
        assert steps[name]["detail"] == "skipped: promoted early by ada-approver"
    assert rollout.canary["verdicts"] == []
    assert rollout.canary["decision"]["action"] == "promote" and rollout.canary["decision"]["actor"] == "ada-approver"
    event = AuditEvent.objects.get(verb="rollout.canary_promote_now")
    assert event.actor_name == "ada-approver" and event.before == {"step": 0, "weight": 10}
    assert backend.log[-2:] == [("stable", 2), ("canary_end", 2)]


def test_the_requester_aborts_a_canary_and_all_traffic_goes_back_to_stable(
    canary, backend, clock, sent_tasks, engineer, mlflow_store
):
    req, rollout = canary()
    rollout = time_passes(clock, rollout, sent_tasks)  # at step 2 now

    services.canary_abort(rollout_id=rollout.pk, actor=engineer, reason="the dashboard looks odd")
    sent_tasks.run_all()

    rollout.refresh_from_db()
    req.refresh_from_db()
    assert rollout.state == Rollout.ROLLED_BACK and req.state == PromotionRequest.ROLLED_BACK
    assert rollout.reason.startswith(
        "Canary aborted by eli-engineer at step 2 (50 %): the dashboard looks odd. Revision 1 (v1) serves again."
    )
    steps = step_states(rollout)
    assert steps["canary_step_1"] == "skipped" and steps["restore_canary_end"] == "done"
    assert steps["promote_apply"] == "skipped" and "restore_apply" not in steps
    assert backend.log[-1] == ("canary_end", 1) and backend.stable == 1
    assert _alias(mlflow_store) == "1"
    event = AuditEvent.objects.get(verb="rollout.canary_abort")
    assert event.actor_name == "eli-engineer" and event.after == {
        "decision": "abort",
        "reason": "the dashboard looks odd",
    }


def test_a_decision_made_while_a_worker_runs_the_canary_is_acted_on_before_it_lets_go(
    canary, backend, approver, sent_tasks, mlflow_store
):
    """The promote-now lands while the worker verifies the canary: the worker sees it as it
    marks the next step running, so the canary never waits for a step it was told to skip."""
    backend.on_canary_call = lambda: (
        setattr(backend, "on_canary_call", None),
        services.canary_promote_now(rollout_id=Rollout.objects.get(strategy="canary").pk, actor=approver),
    )

    _, rollout = canary()

    rollout.refresh_from_db()
    assert rollout.state == Rollout.LIVE and _alias(mlflow_store) == "2"
    assert step_states(rollout)["canary_step_0"] == "skipped"


def test_an_abort_that_arrives_as_the_step_lets_go_is_acted_on_at_once(
    canary, backend, engineer, sent_tasks, monkeypatch
):
    real = services.rollout_hold

    def abort_first(**kwargs):
        monkeypatch.setattr(services, "rollout_hold", real)
        services.canary_abort(rollout_id=kwargs["rollout_id"], actor=engineer, reason="")
        return real(**kwargs)

    monkeypatch.setattr(services, "rollout_hold", abort_first)

    _, rollout = canary()

    rollout.refresh_from_db()
    assert rollout.state == Rollout.ROLLED_BACK and rollout.next_check_at is None
    assert rollout.reason.startswith("Canary aborted by eli-engineer at step 1 (10 %).")


def test_a_first_deployment_with_a_canary_plan_goes_all_at_once(
    engineer, approver, iris, staging_local, sent_tasks, backend
):
    req = promote(
        engineer, approver, iris.versions.get(version=1), staging_local.environment, sent_tasks, with_plan=PLAN
    )
    rollout = Rollout.objects.get(request=req)
    assert req.state == PromotionRequest.LIVE
    assert rollout.strategy == "all_at_once" and rollout.canary == {}
    assert [s["name"] for s in rollout.steps] == services.DEPLOY_STEPS
