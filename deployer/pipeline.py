"""The rollout pipeline: export → apply → wait → verify → move alias → live, and on any
failure, restore the revision that served before. A canary (``Rollout.strategy``) goes
export → canary beside stable → one step per plan step (weight, hold, judge) → promote →
canary removed → move alias; a failed verdict or an abort sends all traffic back to stable.

The plan is the rollout row's list of steps. Each step is marked running, then done or
failed, as it goes; a rerun (a Celery retry, or another worker resuming after this one was
killed) skips the steps already done and repeats the one that was interrupted. Every step
is safe to repeat: exports are idempotent, server-side apply converges, waiting and
verifying only read, and the alias service does nothing the second time.

A canary step holds for minutes to hours without holding a worker: it stores when it must
be looked at again (``next_check_at``) and lets go; the controller queues it when that time
comes, and the next worker goes on inside the same step from the stored state (the step's
start, the weight applied, the verdict once recorded), so a killed worker neither skips nor
repeats a step.

Nothing here runs inside a database transaction: the slow calls (MLflow, the cluster, the
model server) happen between short writes made by deployer.services.
"""

import logging
import os
import socket
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from console.errors import UpstreamUnavailable
from deployer import services, tfserving
from deployer.backends import backend_for
from deployer.backends.errors import BackendError, PermanentError, RolloutFailed, RolloutTimeout, TransientError
from deployer.canary import analysis
from deployer.manifests import Release
from deployer.metrics import series
from deployer.models import Rollout
from deployer.smoke import example_request
from registry.promotions import canary_plan
from registry.promotions import services as promotions
from registry.promotions.models import PromotionRequest

log = logging.getLogger(__name__)


MAX_ATTEMPTS = 5


class VerifyFailed(Exception):
    """The version does not answer as it must."""


class _Failed(Exception):
    """A step failed for good: leave the normal plan and restore."""


class _Hold(Exception):
    """A canary step waits until ``until``: let go of the worker (the controller queues the
    rollout again then)."""

    def __init__(self, until: datetime):
        super().__init__(f"waiting until {until.isoformat()}")
        self.until = until


def _at(value: str) -> datetime:
    moment = parse_datetime(value)
    assert moment is not None, value
    return moment


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


@contextmanager
def _heartbeat(rollout_id: int, worker: str, lost: threading.Event):
    """Renew the claim while the steps run, from a thread: a wait can last many minutes
    without any row being written."""
    stop = threading.Event()
    interval = max(1.0, settings.DEPLOYER_LEASE_SECONDS / 3)

    def beat():
        try:
            while not stop.wait(interval):
                if not services.rollout_heartbeat(rollout_id=rollout_id, worker=worker):
                    lost.set()
                    return
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"rollout-{rollout_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


class Run:
    def __init__(self, rollout: Rollout, worker: str):
        self.rollout = rollout
        self.worker = worker
        self.steps = [dict(s) for s in rollout.steps]
        self.deployment = rollout.deployment
        self._backend = None
        self.lost = threading.Event()
        # A canary's state as stored (CANARY.md), kept up to date here and saved with the steps.
        self.canary = dict(rollout.canary or {})
        self.plan = canary_plan.parse(self.canary["plan"]) if rollout.is_canary else None

    @property
    def backend(self):
        # Built on first use, inside a step: a target that cannot be reached (a missing
        # kubeconfig, say) fails that step with its reason instead of the whole task.
        if self._backend is None:
            self._backend = backend_for(self.deployment)
        return self._backend

    # --- bookkeeping --------------------------------------------------------

    def _save(self, **extra) -> None:
        if self.rollout.is_canary:
            extra["canary"] = self.canary
        decision = services.rollout_update_steps(rollout_id=self.rollout.pk, steps=self.steps, **extra)
        if decision is not None:
            self.canary["decision"] = decision

    def _mark(self, step: dict, state: str, detail: str | None = None) -> None:
        now = timezone.now().isoformat()
        if state == "running":
            step["started_at"] = step["started_at"] or now
        else:
            step["finished_at"] = now
        step["state"] = state
        if detail is not None:
            step["detail"] = detail[:4000]
        self._save()

    def _progress(self, step: dict):
        def report(message: str) -> None:
            step["detail"] = message[:4000]
            self._save()

        return report

    def release(self, rollout: Rollout | None = None, *, track: str = "stable") -> Release | None:
        rollout = rollout or self.rollout
        if rollout.version is None:
            return None
        return Release(
            model=self.deployment.model.name,
            version=rollout.version.version,
            environment=self.deployment.target.environment.name,
            rollout_id=rollout.pk,
            savedmodel_path=rollout.version.savedmodel_path or ".",
            track=track,
        )

    def _stable_release(self) -> Release:
        """What serves while the canary runs: the revision a canary was started beside."""
        good = self.rollout.restore_to
        assert good is not None, "a canary starts only beside a serving revision"
        release = self.release(good)
        assert release is not None
        return release

    def _canary_release(self) -> Release:
        release = self.release(track="canary")
        assert release is not None
        return release

    # --- steps ------------------------------------------------------------------

    def step_gates(self, step):
        if self.rollout.request_id is None:
            return "no promotion request"
        try:
            passed = promotions.promotion_gates_recheck(request_id=self.rollout.request_id)
        except UpstreamUnavailable as exc:
            raise TransientError(str(exc)) from exc  # the gate inputs cannot be read now: retry later
        if not passed:
            req = PromotionRequest.objects.get(pk=self.rollout.request_id)
            raise _Failed(req.state_reason or "A gate failed just before deployment.")
        return "every gate passed"

    def step_export(self, step):
        return self.backend.prepare(self.release(), self.rollout.version)

    def step_apply(self, step):
        objects = self.backend.render(self.release())
        self._save(manifests=objects)
        self.rollout.manifests = objects
        previous = self.rollout.restore_to.manifests if self.rollout.restore_to_id else None
        self.backend.apply(objects, previous=previous)
        return f"applied {len(objects)} objects: " + ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objects)

    def step_wait(self, step):
        timeout = self.deployment.target.rollout_timeout_seconds
        return self.backend.wait(self.rollout.manifests, timeout=timeout, progress=self._progress(step))

    def _verify(self, release: Release, version) -> str:
        path = tfserving.model_path(release.model, version=release.version)
        answers = self.backend.call(release, "GET", path)
        if not answers:
            raise VerifyFailed(f"No replica serves v{release.version}.")
        for answer in answers:
            states = (
                [s.get("state") for s in (answer.body or {}).get("model_version_status", [])]
                if isinstance(answer.body, dict)
                else []
            )
            if answer.status != 200 or states != ["AVAILABLE"]:
                raise VerifyFailed(
                    f"{answer.replica}: v{release.version} is not AVAILABLE "
                    f"(HTTP {answer.status}: {str(answer.body)[:300]})"
                )
        example = example_request(version.signature)
        if example is None:
            return f"AVAILABLE on {len(answers)} replica(s); no signature, so no smoke predict"
        for answer in self.backend.call(release, "POST", f"{path}:predict", example):
            if answer.status != 200 or not isinstance(answer.body, dict) or "predictions" not in answer.body:
                raise VerifyFailed(
                    f"{answer.replica}: the smoke predict failed (HTTP {answer.status}: {str(answer.body)[:300]})"
                )
        return f"AVAILABLE on {len(answers)} replica(s); smoke predict answered"

    def step_verify(self, step):
        detail = self._verify(self.release(), self.rollout.version)
        self.backend.finalize(self.rollout.manifests)
        return detail

    def step_alias(self, step):
        if self.rollout.request_id is None:
            return "no alias to move"
        req = promotions.promotion_mark_live(request_id=self.rollout.request_id)
        return f"{req.environment.alias} → v{req.version.version} in MLflow"

    def step_alias_back(self, step):
        guarded = self.rollout.rolls_back
        if guarded is None or guarded.request_id is None:
            return "no alias to move"
        req = PromotionRequest.objects.get(pk=guarded.request_id)
        if req.state == PromotionRequest.LIVE:
            req = promotions.promotion_roll_back_live(request_id=req.pk, reason=self.rollout.reason)
        return f"{req.environment.alias} → v{self.rollout.version.version} in MLflow"

    def step_remove(self, step):
        live = self.deployment.live_rollout
        self.backend.remove(live.manifests if live else [])
        return "model server objects deleted"

    def step_unalias(self, step):
        promotions.live_end(actor="worker", model=self.deployment.model, environment=self.deployment.environment)
        return f"alias {self.deployment.environment.alias} removed"

    def step_close(self, step):
        req = promotions.promotion_mark_done(request_id=self.rollout.request_id)
        return f"request #{req.pk} {req.get_state_display().lower()}"

    def step_restore_apply(self, step):
        good = self.rollout.restore_to
        self.backend.apply(good.manifests, previous=self.rollout.manifests or None)
        return f"re-applied revision {good.revision} (v{good.version.version})"

    def step_restore_wait(self, step):
        good = self.rollout.restore_to
        return self.backend.wait(
            good.manifests, timeout=self.deployment.target.rollout_timeout_seconds, progress=self._progress(step)
        )

    def step_restore_verify(self, step):
        good = self.rollout.restore_to
        detail = self._verify(self.release(good), good.version)
        self.backend.finalize(good.manifests)
        return detail

    def step_cleanup(self, step):
        self.backend.remove(self.rollout.manifests)
        return "nothing served before this rollout, so what it applied was deleted"

    # --- a canary's steps ----------------------------------------------------------

    def _objects(self) -> list[dict]:
        return self.canary.get("objects") or []

    def _set_weight(self, weight: int, step: dict) -> str:
        """Send ``weight`` % of the traffic to the canary: render, apply, wait. Safe to repeat
        (server-side apply converges); the weight counts as set only once the wait returned."""
        objects = self.backend.render_canary(self._stable_release(), self._canary_release(), weight)
        # Stored before applying: a restore removes whatever may have been applied.
        self.canary["objects"] = objects
        self._save()
        self.backend.apply(objects)
        detail = self.backend.wait(
            objects, timeout=self.deployment.target.rollout_timeout_seconds, progress=self._progress(step)
        )
        self.canary["weight"] = weight
        self._save()
        return detail

    def step_canary_apply(self, step):
        assert self.plan is not None
        weight = self.plan.steps[0].weight
        objects = self.backend.render_canary(self._stable_release(), self._canary_release(), weight)
        self.canary["objects"] = objects
        self._save()
        self.backend.apply(objects)
        return f"applied {len(objects)} objects beside stable for {weight} % of the traffic: " + ", ".join(
            f"{o['kind']}/{o['metadata']['name']}" for o in objects
        )

    def step_canary_wait(self, step):
        assert self.plan is not None
        detail = self.backend.wait(
            self._objects(), timeout=self.deployment.target.rollout_timeout_seconds, progress=self._progress(step)
        )
        self.canary["weight"] = self.plan.steps[0].weight
        return detail

    def step_canary_verify(self, step):
        return self._verify(self._canary_release(), self.rollout.version)

    def _canary_step(self, step: dict, index: int) -> str:
        """One plan step: set its weight, hold for its seconds, judge its window. Each part is
        stored as it is done, so a worker that takes over goes on from the same point."""
        assert self.plan is not None
        plan_step = self.plan.steps[index]
        verdict = next((v for v in self.canary.get("verdicts", []) if v["step"] == index), None)
        if verdict is None:
            if self.canary.get("step") != index or not self.canary.get("step_started_at"):
                if self.canary.get("weight") != plan_step.weight:
                    self._set_weight(plan_step.weight, step)
                now = timezone.now()
                until = now + timedelta(seconds=plan_step.seconds)
                self.canary.update(
                    step=index,
                    step_started_at=now.isoformat(),
                    hold_until=until.isoformat(),
                    check_at=until.isoformat(),
                    waiting=None,
                )
                step["detail"] = f"{plan_step.weight} % of the traffic to the canary until {until:%H:%M:%S} UTC"
                self._save()
            check_at = _at(self.canary["check_at"])
            if timezone.now() < check_at:
                raise _Hold(check_at)
            verdict = self._judge(step, index, plan_step)
        if verdict["passed"]:
            return f"{verdict['result']}: {verdict['reason']}"
        raise _Failed(verdict["reason"])

    def _judge(self, step: dict, index: int, plan_step: canary_plan.CanaryStep) -> dict:
        """Canary against stable over the step's window, recorded once with its numbers; an
        inconclusive window follows the plan (``wait``: look again later, the window growing)."""
        assert self.plan is not None
        start, end = _at(self.canary["step_started_at"]), timezone.now()
        stable = series.track_window(self.deployment.pk, "stable", start, end)
        canary = series.track_window(self.deployment.pk, "canary", start, end)
        judged = analysis.judge(self.plan.analysis, stable, canary)
        # What happens: the verdict, or for an inconclusive window what the plan says.
        outcome: str = self.plan.analysis.inconclusive if judged.result == "inconclusive" else judged.result
        if outcome == "wait":
            again = end + timedelta(seconds=max(settings.CANARY_RECONCILE_SECONDS, min(plan_step.seconds, 60)))
            self.canary["waiting"] = {"reason": judged.reason, "numbers": judged.numbers, "at": end.isoformat()}
            self.canary["check_at"] = again.isoformat()
            step["detail"] = f"inconclusive, waiting for more traffic: {judged.reason}"
            self._save()
            raise _Hold(again)
        reason = judged.reason
        if judged.result == "inconclusive":
            verb = "passes" if outcome == "pass" else "fails"  # not outcome + "s": "passs"
            reason = f"inconclusive ({judged.reason}); the plan {verb} an inconclusive step"
        verdict = {
            "step": index,
            "weight": plan_step.weight,
            "result": judged.result,
            "passed": outcome == "pass",
            "reason": reason,
            "numbers": judged.numbers,
            "window_start": start.isoformat(),
            "window_end": end.isoformat(),
            "at": end.isoformat(),
        }
        step["detail"] = reason
        recorded = services.rollout_canary_verdict(
            rollout_id=self.rollout.pk, verdict=verdict, steps=self.steps, canary=self.canary
        )
        self.canary["verdicts"] = [*self.canary.get("verdicts", []), recorded]
        self.canary["waiting"] = None
        return recorded

    def step_promote_apply(self, step):
        return self.step_apply(step)

    def step_promote_wait(self, step):
        return self.step_wait(step)

    def step_promote_verify(self, step):
        detail = self.step_verify(step)
        self.canary["weight"] = 100
        return detail

    def step_canary_end(self, step):
        self.backend.canary_end(self.release(), self._objects())
        return "the canary's objects removed; the new version serves all the traffic"

    def step_restore_canary_end(self, step):
        self.backend.canary_end(self._stable_release(), self._objects())
        self.canary["weight"] = 0
        good = self.rollout.restore_to
        assert good is not None and good.version is not None
        return f"all traffic to revision {good.revision} (v{good.version.version}); the canary removed"

    def _decided(self, step: dict) -> bool:
        """Act on an operator's decision, read under the row's lock as the step was marked
        running (so a decision either lands before a step starts and is seen here, or after
        and is refused: ``Rollout.canary_refusal``). An abort ends the canary (restore);
        promote-now skips the remaining canary steps. True: this step was skipped."""
        decision = self.canary.get("decision") if self.rollout.is_canary and not self._restoring() else None
        if decision is None or step["name"] not in self._canary_part | {"promote_apply"}:
            return False
        actor = decision["actor"]
        if decision["action"] == "abort":
            at = self.canary.get("step")
            where = f"at step {at + 1} ({self.canary.get('weight')} %)" if at is not None else "before its first step"
            why = f": {decision['reason']}" if decision.get("reason") else ""
            self._mark(step, "skipped", f"aborted by {actor}")
            raise _Failed(f"Canary aborted by {actor} {where}{why}.")
        if step["name"].startswith("canary_step_"):
            self._mark(step, "skipped", f"skipped: promoted early by {actor}")
            return True
        return False

    @property
    def _canary_part(self) -> set[str]:
        return {s["name"] for s in self.steps if s["name"].startswith("canary_step_")} | set(
            services.CANARY_FIRST_STEPS
        )

    # --- the run ----------------------------------------------------------------

    def _run_steps(self) -> None:
        for step in self.steps:
            if step["state"] in ("done", "skipped", "failed"):
                continue
            if self.lost.is_set():
                raise TransientError("Another worker took this rollout over.")
            self._mark(step, "running")
            if self._decided(step):
                continue
            try:
                if step["name"].startswith("canary_step_"):
                    detail = self._canary_step(step, int(step["name"].removeprefix("canary_step_")))
                else:
                    detail = getattr(self, f"step_{step['name']}")(step)
            except TransientError as exc:
                self._mark(step, "running", f"retrying: {exc}")
                raise
            except (_Failed, PermanentError, RolloutFailed, RolloutTimeout, VerifyFailed, BackendError) as exc:
                self._mark(step, "failed", str(exc))
                raise _Failed(f"{step['title']} failed: {exc}") from exc
            self._mark(step, "done", detail)

    def _restoring(self) -> bool:
        return any(s["name"] in ("restore_apply", "cleanup", services.CANARY_RESTORE_STEP) for s in self.steps)

    def _plan_restore(self, reason: str) -> None:
        for step in self.steps:
            if step["state"] == "pending":
                step["state"] = "skipped"
        started = {s["name"] for s in self.steps if s["state"] != "skipped"}
        applied = "apply" in started
        if self.rollout.is_canary:
            # Traffic back to stable and the canary removed; once the promotion had begun to
            # replace stable, the previous revision is applied again first.
            names = (services.RESTORE_STEPS if "promote_apply" in started else []) + (
                [services.CANARY_RESTORE_STEP] if "canary_apply" in started else []
            )
        elif self.rollout.kind in (Rollout.UNDEPLOY, Rollout.AUTO_ROLLBACK):
            names = []  # nothing better to restore: an operator decides
        elif self.rollout.restore_to_id:
            names = services.RESTORE_STEPS if applied else []
        else:
            names = ["cleanup"] if applied else []
        self.steps.extend(services.steps_for(names))
        self._save(reason=reason)
        self.rollout.reason = reason

    def _outcome_after_failure(self) -> str:
        restore = [s for s in self.steps if s["name"] in ("restore_verify", services.CANARY_RESTORE_STEP)]
        restored = bool(restore) and all(s["state"] == "done" for s in restore)
        return Rollout.ROLLED_BACK if restored else Rollout.FAILED

    def _finish_failed(self, reason: str, extra: str = "") -> None:
        state = self._outcome_after_failure()
        full = reason + (f" {extra}" if extra else "")
        if state == Rollout.ROLLED_BACK:
            good = self.rollout.restore_to
            # restore_verify ran, so there was a revision (which had served, with a version) to restore.
            assert good is not None and good.version is not None
            full += f" Revision {good.revision} (v{good.version.version}) serves again."
        services.rollout_finish(rollout_id=self.rollout.pk, state=state, reason=full)
        if self.rollout.request_id:
            req = PromotionRequest.objects.get(pk=self.rollout.request_id)
            if req.state == PromotionRequest.DEPLOYING:
                promotions.promotion_mark_failed(
                    request_id=req.pk, reason=full, rolled_back=state == Rollout.ROLLED_BACK
                )

    def _hold(self, until: datetime) -> str | None:
        """Let go of the rollout until its next check. None: another worker has it."""
        outcome = services.rollout_hold(
            rollout_id=self.rollout.pk, worker=self.worker, until=until, steps=self.steps, canary=self.canary
        )
        if outcome == "held":
            return Rollout.RUNNING
        return None if outcome == "lost" else "decided"

    def execute(self, *, final_attempt: bool) -> str | None:
        if self.rollout.attempts > MAX_ATTEMPTS and not self._restoring():
            # Claimed again and again: each worker died or timed out in the same place.
            self._plan_restore(f"Gave up after {MAX_ATTEMPTS} attempts; each one stopped before finishing.")
        try:
            if not self._restoring():
                try:
                    self._run_steps()
                except _Failed as exc:
                    self._plan_restore(str(exc))
                except _Hold as hold:
                    held = self._hold(hold.until)
                    if held != "decided":
                        return held
                    # An operator decided while this step was about to wait: act on it now.
                    return self.execute(final_attempt=final_attempt)
                else:
                    state = Rollout.DONE if self.rollout.kind == Rollout.UNDEPLOY else Rollout.LIVE
                    services.rollout_finish(rollout_id=self.rollout.pk, state=state)
                    return state
            try:
                self._run_steps()
                self._finish_failed(self.rollout.reason)
            except _Failed as exc:
                self._finish_failed(
                    self.rollout.reason, f"Restoring also failed ({exc}); the deployment needs an operator."
                )
            return self._outcome_after_failure()
        except TransientError as exc:
            if not final_attempt:
                services.rollout_release(rollout_id=self.rollout.pk, worker=self.worker, reason=str(exc))
                raise
            # Out of retries: a lasting outage is a failure like any other.
            if not self._restoring():
                self._plan_restore(f"Gave up after repeated temporary errors: {exc}")
                return self.execute(final_attempt=True)
            self._finish_failed(self.rollout.reason, f"Restoring hit repeated temporary errors ({exc}).")
            return self._outcome_after_failure()


def rollout_run(rollout_id: int, *, final_attempt: bool = True) -> str | None:
    """Run (or resume) one rollout to its end. Returns its final state, or None when there was
    nothing to do (already finished, or another worker holds it)."""
    worker = worker_name()
    rollout = services.rollout_claim(rollout_id=rollout_id, worker=worker)
    if rollout is None:
        return None
    rollout = Rollout.objects.select_related(
        "deployment__target__environment",
        "deployment__model",
        "deployment__live_rollout",
        "version",
        "restore_to__version",
        "rolls_back",
    ).get(pk=rollout.pk)
    run = Run(rollout, worker)
    with _heartbeat(rollout.pk, worker, run.lost):
        try:
            return run.execute(final_attempt=final_attempt)
        finally:
            close_old_connections()
