"""A real worker killed with SIGKILL in the middle of a canary step (issue 17, "Done when"):
when a worker comes back the canary goes on from the same step, and no step is skipped or
judged twice. The test plays celery beat: it sends the controller's task every second."""

import os
import signal
import time

import pytest

from console.audit.models import AuditEvent
from deployer.backends.local import LocalBackend
from deployer.models import Rollout
from registry.promotions import services as promotions
from registry.promotions.models import PromotionRequest
from tests.canary_fixtures import plan
from tests.test_rollout_worker_kill import Workers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _beating(workers: Workers, predicate, timeout: float, what: str):
    """Wait for ``predicate`` while sending deployer.reconcile_canaries every second, as beat does."""
    deadline = time.monotonic() + timeout
    last_beat = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() - last_beat >= 1:
            workers.send("deployer.reconcile_canaries", [])
            last_beat = time.monotonic()
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen in {timeout:.0f} s; the workers said:\n{workers.log_tail()}")


def _steps(rollout) -> dict[str, dict]:
    return {s["name"]: s for s in rollout.steps}


def test_a_canary_whose_worker_is_killed_mid_step_goes_on_from_that_step(
    tmp_path, mlflow_store, local_root, engineer, approver, iris, staging_local, sent_tasks
):
    env = staging_local.environment
    live = promotions.promotion_request(
        actor=engineer, version=iris.versions.get(version=1), environment=env, justification="first"
    )
    promotions.promotion_approve(actor=approver, request_id=live.pk, comment="ok")
    sent_tasks.run_all()  # v1 goes live all at once, in this process, on the real local backend
    live.refresh_from_db()
    assert live.state == PromotionRequest.LIVE, live.state_reason

    req = promotions.promotion_request(
        actor=engineer, version=iris.versions.get(version=2), environment=env, justification="canary"
    )
    # Short steps; with no per-track traffic here a step is inconclusive, which this plan passes.
    steps = [{"weight": 10, "seconds": 6}, {"weight": 50, "seconds": 6}]
    PromotionRequest.objects.filter(pk=req.pk).update(plan={**plan(inconclusive="pass"), "steps": steps})
    promotions.promotion_approve(actor=approver, request_id=req.pk, comment="ok")
    sent_tasks.clear()
    workers = Workers(tmp_path, mlflow_store, local_root)
    server = None
    try:
        first = workers.start()
        workers.send("deployer.deploy_promotion", [req.pk])

        def holding_step_0():
            rollout = Rollout.objects.filter(request=req).first()
            return rollout and _steps(rollout)["canary_step_0"]["state"] == "running" and rollout.next_check_at

        _beating(workers, holding_step_0, 120, "the canary holding its first step")
        rollout = Rollout.objects.get(request=req)
        started_at = rollout.started_at
        # The router stops answering, so the worker that sets step 2's weight is stuck waiting
        # for the router to take it (LocalBackend._wait_split): in the middle of that step, when
        # it is killed. Clients of the label are held too, for as long as the router is stopped.
        deployment = rollout.deployment
        server = LocalBackend(root=local_root, name=deployment.name, port=deployment.local_port).router_pid()
        assert server is not None
        os.kill(server, signal.SIGSTOP)

        def setting_step_1_weight():
            current = Rollout.objects.get(pk=rollout.pk)
            steps = _steps(current)
            return (
                steps["canary_step_0"]["state"] == "done"
                and steps["canary_step_1"]["state"] == "running"
                and current.worker
                and _canary_weight(current.canary["objects"]) == 50
                and current
            )

        mid_step = _beating(workers, setting_step_1_weight, 60, "the worker setting step 2's weight")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        os.kill(server, signal.SIGCONT)
        step_1_started = _steps(mid_step)["canary_step_1"]["started_at"]
        assert mid_step.canary["weight"] == 10 and [v["step"] for v in mid_step.canary["verdicts"]] == [0]
        assert Rollout.objects.get(pk=rollout.pk).state == Rollout.RUNNING

        workers.start()  # its start-up hook resumes the rollout once the dead worker's lease ran out
        _beating(
            workers,
            lambda: Rollout.objects.get(pk=rollout.pk).state not in Rollout.ACTIVE,
            180,
            "the resumed canary finishing",
        )
    finally:
        if server is not None:
            os.kill(server, signal.SIGCONT)
        workers.stop()

    rollout.refresh_from_db()
    req.refresh_from_db()
    assert rollout.state == Rollout.LIVE, rollout.reason
    assert req.state == PromotionRequest.LIVE
    assert str(mlflow_store.client().get_model_version_by_alias("iris", "staging").version) == "2"
    # The same step went on: begun once, judged once, like step 1; nothing skipped.
    assert _steps(rollout)["canary_step_1"]["started_at"] == step_1_started
    assert [v["step"] for v in rollout.canary["verdicts"]] == [0, 1]
    assert all(s["state"] == "done" for s in rollout.steps)
    assert rollout.started_at == started_at and rollout.attempts == 2
    verbs = list(
        AuditEvent.objects.filter(object_type="deployer.rollout", object_id=str(rollout.pk))
        .order_by("id")
        .values_list("verb", flat=True)
    )
    assert verbs == [
        "rollout.created",
        "rollout.started",
        "rollout.canary_step_passed",
        "rollout.resumed",
        "rollout.canary_step_passed",
        "rollout.live",
    ]


def _canary_weight(objects: list[dict]) -> int | None:
    """The canary's weight in the local backend's split object (render_canary's second)."""
    for obj in objects:
        if obj["kind"] == "LocalTrafficSplit":
            return next(b["weight"] for b in obj["spec"]["backends"] if b["track"] == "canary")
    return None
