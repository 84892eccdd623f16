"""The rollout pipeline: export → apply → wait → verify → move alias → live, and on any
failure, restore the revision that served before.

The plan is the rollout row's list of steps. Each step is marked running, then done or
failed, as it goes; a rerun (a Celery retry, or another worker resuming after this one was
killed) skips the steps already done and repeats the one that was interrupted. Every step
is safe to repeat: exports are idempotent, server-side apply converges, waiting and
verifying only read, and the alias service does nothing the second time.

Nothing here runs inside a database transaction: the slow calls (MLflow, the cluster, the
model server) happen between short writes made by deployer.services.
"""

import logging
import os
import socket
import threading
from contextlib import contextmanager

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from console.errors import UpstreamUnavailable
from deployer import services, tfserving
from deployer.backends import backend_for
from deployer.backends.errors import BackendError, PermanentError, RolloutFailed, RolloutTimeout, TransientError
from deployer.manifests import Release
from deployer.models import Rollout
from deployer.smoke import example_request
from registry.promotions import services as promotions
from registry.promotions.models import PromotionRequest

log = logging.getLogger(__name__)


MAX_ATTEMPTS = 5


class VerifyFailed(Exception):
    """The version does not answer as it must."""


class _Failed(Exception):
    """A step failed for good: leave the normal plan and restore."""


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

    @property
    def backend(self):
        # Built on first use, inside a step: a target that cannot be reached (a missing
        # kubeconfig, say) fails that step with its reason instead of the whole task.
        if self._backend is None:
            self._backend = backend_for(self.deployment)
        return self._backend

    # --- bookkeeping --------------------------------------------------------

    def _save(self, **extra) -> None:
        services.rollout_update_steps(rollout_id=self.rollout.pk, steps=self.steps, **extra)

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

    def release(self, rollout: Rollout | None = None) -> Release | None:
        rollout = rollout or self.rollout
        if rollout.version is None:
            return None
        return Release(
            model=self.deployment.model.name,
            version=rollout.version.version,
            environment=self.deployment.target.environment.name,
            rollout_id=rollout.pk,
            savedmodel_path=rollout.version.savedmodel_path or ".",
        )

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

    # --- the run ----------------------------------------------------------------

    def _run_steps(self) -> None:
        for step in self.steps:
            if step["state"] in ("done", "skipped", "failed"):
                continue
            if self.lost.is_set():
                raise TransientError("Another worker took this rollout over.")
            self._mark(step, "running")
            try:
                detail = getattr(self, f"step_{step['name']}")(step)
            except TransientError as exc:
                self._mark(step, "running", f"retrying: {exc}")
                raise
            except (_Failed, PermanentError, RolloutFailed, RolloutTimeout, VerifyFailed, BackendError) as exc:
                self._mark(step, "failed", str(exc))
                raise _Failed(f"{step['title']} failed: {exc}") from exc
            self._mark(step, "done", detail)

    def _restoring(self) -> bool:
        return any(s["name"] in ("restore_apply", "cleanup") for s in self.steps)

    def _plan_restore(self, reason: str) -> None:
        for step in self.steps:
            if step["state"] == "pending":
                step["state"] = "skipped"
        applied = any(s["name"] == "apply" and s["state"] != "skipped" for s in self.steps)
        if self.rollout.kind in (Rollout.UNDEPLOY, Rollout.AUTO_ROLLBACK):
            names = []  # nothing better to restore: an operator decides
        elif self.rollout.restore_to_id:
            names = services.RESTORE_STEPS if applied else []
        else:
            names = ["cleanup"] if applied else []
        self.steps.extend(services.steps_for(names))
        self._save(reason=reason)
        self.rollout.reason = reason

    def _outcome_after_failure(self) -> str:
        restored = any(s["name"] == "restore_verify" and s["state"] == "done" for s in self.steps)
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

    def execute(self, *, final_attempt: bool) -> str:
        if self.rollout.attempts > MAX_ATTEMPTS and not self._restoring():
            # Claimed again and again: each worker died or timed out in the same place.
            self._plan_restore(f"Gave up after {MAX_ATTEMPTS} attempts; each one stopped before finishing.")
        try:
            if not self._restoring():
                try:
                    self._run_steps()
                except _Failed as exc:
                    self._plan_restore(str(exc))
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
