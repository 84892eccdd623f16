"""Every deployment state change: one function per verb, each writing its audit event in
the same transaction. The pipeline (deployer.pipeline) does the slow work outside any
transaction and records each step through these functions."""

import logging
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from console import perms
from console.audit.services import audit_record
from console.errors import Conflict, NotFound, ServiceError
from console.transactions import on_commit_safely
from deployer import manifests, selectors
from deployer.backends.local import free_port
from deployer.models import Deployment, DeploymentTarget, Rollout, RolloutStrategy
from registry.promotions import canary_plan, notify
from registry.promotions import services as promotions
from registry.promotions.models import PromotionRequest

log = logging.getLogger(__name__)
RUN_TASK = "deployer.run_rollout"

DEPLOY_STEPS = ["gates", "export", "apply", "wait", "verify", "alias"]
REDEPLOY_STEPS = ["export", "apply", "wait", "verify"]
UNDEPLOY_STEPS = ["remove", "unalias"]
AUTO_ROLLBACK_STEPS = ["export", "apply", "wait", "verify", "alias_back"]
RESTORE_STEPS = ["restore_apply", "restore_wait", "restore_verify"]
# A canary (CANARY.md): these, with one canary_step_<i> per plan step between them.
CANARY_FIRST_STEPS = ["gates", "export", "canary_apply", "canary_wait", "canary_verify"]
CANARY_LAST_STEPS = ["promote_apply", "promote_wait", "promote_verify", "canary_end", "alias"]
# What a failed or aborted canary does: traffic back to stable and the canary removed; after
# the promotion had begun, the previous revision is applied again first.
CANARY_RESTORE_STEP = "restore_canary_end"
STEP_TITLES = {
    "gates": "Re-check gates",
    "export": "Export model",
    "apply": "Apply (server-side)",
    "wait": "Wait for rollout",
    "verify": "Verify serving",
    "alias": "Move alias",
    "remove": "Remove objects",
    "unalias": "Remove alias",
    "restore_apply": "Restore: apply previous revision",
    "restore_wait": "Restore: wait for rollout",
    "restore_verify": "Restore: verify previous version",
    "cleanup": "Remove what was applied",
    "alias_back": "Move alias back",
    "close": "Close the request",
    "canary_apply": "Canary: apply beside stable",
    "canary_wait": "Canary: wait for it to serve",
    "canary_verify": "Canary: verify serving",
    "promote_apply": "Promote: apply as stable",
    "promote_wait": "Promote: wait for rollout",
    "promote_verify": "Promote: verify serving",
    "canary_end": "Remove the canary",
    "restore_canary_end": "Restore: all traffic to stable, canary removed",
}
# The rollout an approved request becomes: its kind and steps.
REQUEST_ROLLOUTS = {
    PromotionRequest.PROMOTE: (Rollout.DEPLOY, DEPLOY_STEPS),
    PromotionRequest.ROLLBACK: (Rollout.ROLLBACK, DEPLOY_STEPS),
    PromotionRequest.REDEPLOY: (Rollout.REDEPLOY, REDEPLOY_STEPS + ["close"]),
    PromotionRequest.UNDEPLOY: (Rollout.UNDEPLOY, UNDEPLOY_STEPS + ["close"]),
}


def steps_for(names: list[str]) -> list[dict]:
    return [
        {"name": n, "title": STEP_TITLES[n], "state": "pending", "started_at": None, "finished_at": None, "detail": ""}
        for n in names
    ]


def canary_steps_for(plan: canary_plan.CanaryPlan) -> list[dict]:
    """A canary rollout's steps: one ``canary_step_<i>`` per plan step, titled with its weight."""
    rows = steps_for(CANARY_FIRST_STEPS)
    for i, step in enumerate(plan.steps):
        [row] = steps_for(["canary_apply"])
        row["name"] = f"canary_step_{i}"
        row["title"] = f"Canary step {i + 1}: {step.weight} % for {canary_plan.duration(step.seconds)}"
        rows.append(row)
    return rows + steps_for(CANARY_LAST_STEPS)


def queue_run(rollout_id: int, *, expires: float | None = None) -> None:
    """Send the rollout to a worker once the transaction that created it has committed.
    ``expires``: a message the controller sends again anyway need not outlive that."""
    options = {"expires": expires} if expires else {}
    on_commit_safely(
        lambda: current_app.send_task(RUN_TASK, args=[rollout_id], **options), what=f"Rollout {rollout_id}"
    )


def deployment_get_or_create(*, target: DeploymentTarget, model) -> Deployment:
    deployment = Deployment.objects.filter(target=target, model=model).first()
    if deployment is not None:
        return deployment
    name = manifests.resource_name(model.name, target.environment.name)
    try:
        with transaction.atomic():
            return Deployment.objects.create(
                target=target,
                model=model,
                name=name,
                local_port=free_port() if target.backend == target.LOCAL else None,
            )
    except IntegrityError:  # created concurrently
        return Deployment.objects.get(target=target, model=model)


def _next_revision(deployment: Deployment) -> int:
    last = deployment.rollouts.order_by("-revision").values_list("revision", flat=True).first()
    return (last or 0) + 1


def _create(
    *,
    deployment: Deployment,
    kind: str,
    version,
    request=None,
    actor=None,
    steps: list[str],
    plan: canary_plan.CanaryPlan | None = None,
) -> Rollout:
    """Inside the caller's transaction, with the deployment row locked. With a ``plan`` the
    rollout is a canary and its steps follow the plan."""
    rollout = Rollout.objects.create(
        deployment=deployment,
        revision=_next_revision(deployment),
        kind=kind,
        version=version,
        request=request,
        requested_by=actor if not isinstance(actor, str) else None,
        steps=canary_steps_for(plan) if plan else steps_for(steps),
        restore_to=deployment.live_rollout,
        strategy=RolloutStrategy.CANARY if plan else RolloutStrategy.ALL_AT_ONCE,
        canary={"plan": plan.to_dict(), "step": None, "weight": 0, "verdicts": [], "decision": None} if plan else {},
    )
    audit_record(
        actor=actor or "worker",
        verb="rollout.created",
        obj=rollout,
        after={
            "kind": kind,
            "version": version.version if version else None,
            "request": request.pk if request else None,
            "revision": rollout.revision,
            "strategy": rollout.strategy,
            **({"plan": plan.describe()} if plan else {}),
        },
    )
    return rollout


def _canary_plan(req: PromotionRequest, deployment: Deployment) -> canary_plan.CanaryPlan | None:
    """The canary plan approved with ``req``, or None to go all at once: the request asked for
    no canary, or it is no promotion (a rollback restores a version already trusted), or
    nothing serves yet to compare the canary with. Raises PlanError for a plan that cannot run."""
    plan = req.plan or {}
    if plan.get("strategy") != RolloutStrategy.CANARY or req.kind != PromotionRequest.PROMOTE:
        return None
    if not deployment.is_serving:
        return None
    return canary_plan.from_snapshot(plan)


def rollout_for_promotion(*, request_id: int, resume_deploying: bool = False) -> int | None:
    """Claim an approved promotion for deployment and create its rollout; for a request
    already claimed, return its rollout (a redelivered task resumes it). None: nothing to do.
    resume_deploying: also create the rollout of a request left ``deploying`` without one
    (the hand-over sweep). An existing rollout always wins: one per request."""
    existing = Rollout.objects.filter(request_id=request_id).first()
    if existing is not None:
        return existing.pk
    wanted = (
        (PromotionRequest.APPROVED, PromotionRequest.DEPLOYING) if resume_deploying else (PromotionRequest.APPROVED,)
    )
    req = PromotionRequest.objects.select_related("environment", "model", "version").filter(pk=request_id).first()
    if req is None or req.state not in wanted:
        return None
    target = DeploymentTarget.objects.filter(environment=req.environment).first()
    if target is None:
        if promotions.promotion_start_deploying(request_id=request_id) or req.state == PromotionRequest.DEPLOYING:
            promotions.promotion_mark_failed(
                request_id=request_id,
                reason=f"The {req.environment.name} environment has no deployment target. An admin adds one "
                "under Admin → Deployment targets, then the version can be requested again.",
            )
        return None
    deployment = deployment_get_or_create(target=target, model=req.model)
    kind, steps = REQUEST_ROLLOUTS[req.kind]
    with transaction.atomic():
        Deployment.objects.select_for_update().get(pk=deployment.pk)
        # Under the deployment's lock: a rollout created meanwhile (the task and the sweep at
        # once) is seen here, and its claim wins.
        existing = Rollout.objects.filter(request_id=request_id).first()
        if existing is not None:
            return existing.pk
        if not promotions.promotion_start_deploying(request_id=request_id):
            state = PromotionRequest.objects.filter(pk=request_id).values_list("state", flat=True).first()
            if not (resume_deploying and state == PromotionRequest.DEPLOYING):
                return None
        deployment.refresh_from_db()
        if kind in (Rollout.REDEPLOY, Rollout.UNDEPLOY) and not deployment.is_serving:
            promotions.promotion_mark_failed(
                request_id=request_id, reason=f"{deployment} no longer serves; there is nothing to {kind}."
            )
            return None
        if kind == Rollout.REDEPLOY:
            assert deployment.live_rollout is not None  # refused just above
            version = deployment.live_rollout.version
        else:
            version = None if kind == Rollout.UNDEPLOY else req.version
        try:
            plan = _canary_plan(req, deployment)
        except canary_plan.PlanError as exc:
            reason = f"The approved canary plan cannot run: {exc}"
            promotions.promotion_mark_failed(request_id=request_id, reason=reason)
            return None
        rollout = _create(
            deployment=deployment, kind=kind, version=version, request=req, actor="worker", steps=steps, plan=plan
        )
        if kind == Rollout.UNDEPLOY:
            rollout.reason = req.justification
            rollout.save(update_fields=["reason"])
    return rollout.pk


def handover_sweep(*, now=None) -> list[int]:
    """The durable hand-over: an approved request is itself the record that a deployment is
    owed. Every approved request without a rollout after DEPLOYER_HANDOVER_GRACE_SECONDS (its
    message was lost: the broker was down, a callback failed), and every ``deploying`` one
    whose rollout is gone, gets its rollout now, queued on commit. Safe to run twice and
    beside the task: an existing rollout claim wins. Returns the rollout ids queued."""
    now = now or timezone.now()
    due = now - timedelta(seconds=settings.DEPLOYER_HANDOVER_GRACE_SECONDS)
    owed = list(
        PromotionRequest.objects.filter(
            state__in=(PromotionRequest.APPROVED, PromotionRequest.DEPLOYING), updated_at__lt=due
        )
        .exclude(rollouts__isnull=False)
        .order_by("updated_at")
        .values_list("pk", flat=True)
    )
    queued = []
    for request_id in owed:
        try:
            rollout_id = rollout_for_promotion(request_id=request_id, resume_deploying=True)
        except Exception:  # one bad request must not stop the others
            log.exception("Hand-over sweep could not create the rollout of request #%s", request_id)
            continue
        if rollout_id is not None:
            with transaction.atomic():
                queue_run(rollout_id)
            queued.append(rollout_id)
    if queued:
        log.info("Hand-over sweep queued rollouts %s for approved requests %s", queued, owed)
    return queued


def rollout_redeploy(*, actor, deployment_id: int, reason: str = "") -> Rollout | PromotionRequest:
    """Apply the live revision again (after drift, or to restart its pods). Where the
    environment requires approval this is a request (kind redeploy) that its approvers
    decide; with none required the rollout is queued at once."""
    reason = (reason or "").strip()
    with transaction.atomic():
        deployment = _locked_deployment(deployment_id)
        if not deployment.is_serving:
            raise Conflict(f"{deployment} serves no revision to redeploy.")
        live = deployment.live_rollout
        assert live is not None  # is_serving says so
        if deployment.environment.required_approvals:
            version = live.version
            assert version is not None, "a serving rollout has a version (only an undeploy has none)"
        else:
            _refuse_if_busy(deployment)
            rollout = _create(
                deployment=deployment, kind=Rollout.REDEPLOY, version=live.version, actor=actor, steps=REDEPLOY_STEPS
            )
            queue_run(rollout.pk)
            return rollout
    return promotions.promotion_request(
        actor=actor,
        version=version,
        environment=deployment.environment,
        kind=PromotionRequest.REDEPLOY,
        justification=reason or f"Redeploy revision {live.revision} (v{version.version}): re-apply what serves.",
    )


def rollout_undeploy(*, actor, deployment_id: int, reason: str) -> Rollout | PromotionRequest:
    """Stop serving. Where the environment requires approval this is a request (kind
    undeploy) that its approvers decide; with none required the rollout is queued at once.
    The emergency path without approval is deployment_break_glass_stop."""
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError("Say why the model stops serving.", field="reason")
    with transaction.atomic():
        deployment = _locked_deployment(deployment_id)
        if not deployment.is_serving:
            raise Conflict(f"{deployment} is not serving.")
        assert deployment.live_rollout is not None  # is_serving says so
        if deployment.environment.required_approvals:
            version = deployment.live_rollout.version
            assert version is not None, "a serving rollout has a version (only an undeploy has none)"
        else:
            _refuse_if_busy(deployment)
            return _undeploy_now(actor=actor, deployment=deployment, reason=reason)
    return promotions.promotion_request(
        actor=actor,
        version=version,
        environment=deployment.environment,
        kind=PromotionRequest.UNDEPLOY,
        justification=reason,
    )


def _undeploy_now(*, actor, deployment: Deployment, reason: str) -> Rollout:
    rollout = _create(deployment=deployment, kind=Rollout.UNDEPLOY, version=None, actor=actor, steps=UNDEPLOY_STEPS)
    rollout.reason = reason
    rollout.save(update_fields=["reason"])
    queue_run(rollout.pk)
    return rollout


def deployment_break_glass_stop(*, actor, deployment_id: int, reason: str) -> Rollout:
    """The emergency stop: an admin with the break-glass permission undeploys at once,
    without approval, with a mandatory reason. The approver group is told (email and the
    environment's webhook) and the audit trail marks it as break-glass."""
    if not actor.has_perm(perms.BREAK_GLASS):
        raise PermissionDenied("Only an admin with the break-glass permission may stop a deployment at once.")
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError("Say why this cannot wait for approval: the approvers read it.", field="reason")
    if len(reason) > 10000:
        raise ServiceError("The reason is at most 10000 characters.", field="reason")
    with transaction.atomic():
        deployment = _locked_deployment(deployment_id)
        if not deployment.is_serving:
            raise Conflict(f"{deployment} is not serving.")
        assert deployment.live_rollout is not None  # is_serving says so
        serving = deployment.live_rollout.version
        assert serving is not None, "a serving rollout has a version (only an undeploy has none)"
        # No busy check: an emergency stop queues right behind whatever runs now.
        rollout = _undeploy_now(actor=actor, deployment=deployment, reason=f"Break-glass stop by {actor}: {reason}")
        env = deployment.environment
        audit_record(
            actor=actor,
            verb="deployment.break_glass_stop",
            obj=deployment,
            before={"state": deployment.state, "version": serving.version},
            after={"break_glass": True, "reason": reason, "rollout": rollout.pk, "stopped_by": actor.get_username()},
        )
        url = f"{settings.MODELGATE_URL.rstrip('/')}/deployments/{deployment.pk}/"
        notify.approvers_on_commit(
            env,
            "deployment.break_glass_stop",
            payload={
                "deployment": {
                    "id": deployment.pk,
                    "model": deployment.model.name,
                    "environment": env.name,
                    "stopped_by": actor.get_username(),
                    "reason": reason,
                    "rollout": rollout.pk,
                    "url": url,
                }
            },
            subject=f"BREAK-GLASS: {deployment.model.name} stopped in {env.name} by {actor}",
            body=f"{actor} stopped {deployment} at once, without approval (break-glass).\n\n"
            f"Reason: {reason}\n\nOpen it: {url}\n",
        )
    return rollout


def rollback_request(*, actor, deployment_id: int, revision: int, justification: str) -> PromotionRequest:
    """Ask to serve an earlier good revision again. It goes through the environment's
    approval policy like any promotion; once approved the deployer rolls it out."""
    deployment = Deployment.objects.select_related("target__environment", "model").filter(pk=deployment_id).first()
    if deployment is None:
        raise NotFound(f"Deployment #{deployment_id} does not exist.")
    rollout = deployment.rollouts.select_related("version").filter(revision=revision).first()
    if rollout is None:
        raise ServiceError(f"Revision {revision} does not exist.", field="revision")
    refusal = deployment.rollback_refusal(rollout)
    if refusal:
        raise ServiceError(refusal, field="revision")
    assert rollout.version is not None  # rollback_refusal refuses a revision without one
    return promotions.promotion_request(
        actor=actor,
        version=rollout.version,
        environment=deployment.environment,
        justification=justification,
        kind=PromotionRequest.ROLLBACK,
    )


def _locked_deployment(deployment_id: int) -> Deployment:
    deployment = (
        Deployment.objects.select_for_update(of=("self",))
        .select_related("target__environment", "model", "live_rollout")
        .filter(pk=deployment_id)
        .first()
    )
    if deployment is None:
        raise NotFound(f"Deployment #{deployment_id} does not exist.")
    return deployment


def _refuse_if_busy(deployment: Deployment) -> None:
    active = deployment.rollouts.filter(state__in=Rollout.ACTIVE).first()
    if active is not None:
        raise Conflict(f"Revision {active.revision} is still {active.state}; wait for it to finish.")


# --- what the pipeline calls ------------------------------------------------


def rollout_claim(*, rollout_id: int, worker: str) -> Rollout | None:
    """Take a rollout to run: a queued one, or a running one whose worker stopped renewing
    its lease (it died). None when it is done, held by a live worker, or waiting for an
    earlier rollout of the same deployment."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.DEPLOYER_LEASE_SECONDS)
    try:
        with transaction.atomic():
            rollout = Rollout.objects.select_for_update().filter(pk=rollout_id).first()
            if rollout is None:
                return None
            # A canary waiting between checks has no worker and no lease on purpose: it is
            # taken when its check is due, not before, and that is no new attempt.
            waiting = rollout.next_check_at is not None
            due = (
                rollout.state == Rollout.RUNNING and rollout.next_check_at is not None and rollout.next_check_at <= now
            )
            if due:
                rollout.worker, rollout.heartbeat_at, rollout.next_check_at = worker, now, None
                rollout.save(update_fields=["worker", "heartbeat_at", "next_check_at"])
                return rollout
            resumable = (
                rollout.state == Rollout.RUNNING
                and not waiting
                and (rollout.heartbeat_at is None or rollout.heartbeat_at < stale)
            )
            if rollout.state != Rollout.QUEUED and not resumable:
                return None
            earlier = (
                Rollout.objects.filter(deployment_id=rollout.deployment_id, state__in=Rollout.ACTIVE)
                .exclude(pk=rollout.pk)
                .filter(created_at__lte=rollout.created_at)
                .exists()
            )
            if earlier:
                return None
            before = rollout.state
            rollout.state, rollout.worker, rollout.heartbeat_at = Rollout.RUNNING, worker, now
            rollout.started_at = rollout.started_at or now
            rollout.attempts += 1
            rollout.save(update_fields=["state", "worker", "heartbeat_at", "started_at", "attempts"])
            audit_record(
                actor="worker",
                verb="rollout.resumed" if resumable else "rollout.started",
                obj=rollout,
                before={"state": before},
                after={"state": Rollout.RUNNING, "worker": worker, "attempt": rollout.attempts},
            )
    except IntegrityError:  # another rollout of this deployment started meanwhile
        return None
    return rollout


def rollout_heartbeat(*, rollout_id: int, worker: str) -> bool:
    """Renew the lease; False means another worker took the rollout over."""
    return bool(
        Rollout.objects.filter(pk=rollout_id, state=Rollout.RUNNING, worker=worker).update(heartbeat_at=timezone.now())
    )


def rollout_release(*, rollout_id: int, worker: str, reason: str) -> None:
    """Give a running rollout back to the queue (a transient error; Celery retries it)."""
    with transaction.atomic():
        changed = Rollout.objects.filter(pk=rollout_id, state=Rollout.RUNNING, worker=worker).update(
            state=Rollout.QUEUED, worker="", heartbeat_at=None
        )
        if changed:
            audit_record(
                actor="worker",
                verb="rollout.retrying",
                object_type="deployer.rollout",
                object_id=str(rollout_id),
                after={"reason": reason},
            )


def rollout_update_steps(
    *,
    rollout_id: int,
    steps: list[dict],
    manifests: list[dict] | None = None,
    reason: str | None = None,
    canary: dict | None = None,
) -> dict | None:
    """Progress only (no audit event): the page polls these rows. A canary's state is
    written under the row's lock, keeping the operator's decision made meanwhile, which is
    returned (None: no decision, or not a canary)."""
    fields = {"steps": steps, "heartbeat_at": timezone.now()}
    if manifests is not None:
        fields["manifests"] = manifests
    if reason is not None:
        fields["reason"] = reason
    if canary is None:
        Rollout.objects.filter(pk=rollout_id).update(**fields)
        return None
    with transaction.atomic():
        stored = Rollout.objects.select_for_update().filter(pk=rollout_id).values_list("canary", flat=True).first()
        fields["canary"] = merged = _keep_decision(canary, stored or {})
        Rollout.objects.filter(pk=rollout_id).update(**fields)
    return merged["decision"]


def _keep_decision(canary: dict, stored: dict) -> dict:
    """The worker's canary state with the operator's decision as stored: only
    canary_promote_now and canary_abort write ``decision``."""
    return {**canary, "decision": stored.get("decision") or canary.get("decision")}


def rollout_hold(*, rollout_id: int, worker: str, until, steps: list[dict], canary: dict) -> str:
    """A canary step waits until ``until``: the worker lets go of the rollout, which stays
    running (one rollout per deployment still holds) with ``next_check_at`` for the
    controller. "held"; "decided" when an operator's decision is waiting (the worker goes on
    at once instead); "lost" when this worker no longer holds the rollout. Not audited:
    progress, like the steps."""
    with transaction.atomic():
        mine = Rollout.objects.select_for_update().filter(pk=rollout_id, state=Rollout.RUNNING, worker=worker)
        rollout = mine.first()
        if rollout is None:
            return "lost"
        rollout.steps, rollout.canary = steps, _keep_decision(canary, rollout.canary)
        if rollout.canary.get("decision"):
            rollout.save(update_fields=["steps", "canary"])
            return "decided"
        rollout.next_check_at, rollout.worker, rollout.heartbeat_at = until, "", None
        rollout.save(update_fields=["steps", "canary", "next_check_at", "worker", "heartbeat_at"])
    return "held"


def _canary_summary(rollout: Rollout) -> dict:
    """What a canary notification says about the rollout (the webhook's ``canary`` object)."""
    plan = canary_plan.parse(rollout.canary["plan"])
    return {
        "rollout": rollout.pk,
        "revision": rollout.revision,
        "plan": plan.describe(),
        "steps": len(plan.steps),
        "verdicts": rollout.canary.get("verdicts", []),
        "decision": rollout.canary.get("decision"),
        "url": f"{settings.MODELGATE_URL.rstrip('/')}/rollouts/{rollout.pk}/",
    }


def rollout_canary_verdict(*, rollout_id: int, verdict: dict, steps: list[dict], canary: dict) -> dict:
    """Record a canary step's verdict with its numbers, once: a verdict already recorded for
    that step (by a worker that died before it could go on) is returned as it is, and nothing
    is written or sent again. A passed step tells the requester and the webhook."""
    with transaction.atomic():
        rollout = (
            Rollout.objects.select_for_update(of=("self",))
            .select_related("deployment__target__environment", "deployment__model")
            .get(pk=rollout_id)
        )
        verdicts = list(rollout.canary.get("verdicts", []))
        recorded = next((v for v in verdicts if v["step"] == verdict["step"]), None)
        if recorded is not None:
            return recorded
        rollout.canary = {**_keep_decision(canary, rollout.canary), "verdicts": [*verdicts, verdict], "waiting": None}
        rollout.steps, rollout.heartbeat_at = steps, timezone.now()
        rollout.save(update_fields=["canary", "steps", "heartbeat_at"])
        number, total = verdict["step"] + 1, len(rollout.canary["plan"]["steps"])
        audit_record(
            actor="worker",
            verb="rollout.canary_step_passed" if verdict["passed"] else "rollout.canary_step_failed",
            obj=rollout,
            after={"step": number, **{k: verdict[k] for k in ("weight", "result", "reason", "numbers")}},
        )
        if verdict["passed"] and rollout.request_id:
            notify.on_commit(
                rollout.request_id,
                "canary.step_passed",
                extra={"canary": {**_canary_summary(rollout), "step": number, "verdict": verdict}},
                detail=f"Step {number} of {total} ({verdict['weight']} % of traffic) passed: {verdict['reason']}.",
            )
    return verdict


def _locked_canary(rollout_id: int) -> Rollout:
    rollout = (
        Rollout.objects.select_for_update(of=("self",))
        .select_related("deployment__target__environment", "deployment__model", "request")
        .filter(pk=rollout_id)
        .first()
    )
    if rollout is None:
        raise NotFound(f"Rollout #{rollout_id} does not exist.")
    return rollout


def _canary_decide(*, rollout: Rollout, actor, action: str, reason: str) -> None:
    """Store the operator's decision (the worker acts on it at its next step or check), audit
    it and have the rollout looked at now. Inside the caller's transaction."""
    refusal = rollout.canary_refusal()
    if refusal:
        raise Conflict(refusal)
    now = timezone.now()
    before = {"step": rollout.canary.get("step"), "weight": rollout.canary.get("weight")}
    decision = {"action": action, "actor": actor.get_username(), "at": now.isoformat(), "reason": reason}
    rollout.canary = {**rollout.canary, "decision": decision}
    fields = ["canary"]
    if rollout.next_check_at is not None:  # waiting between checks: its check is due now
        rollout.next_check_at = now
        fields.append("next_check_at")
    rollout.save(update_fields=fields)
    audit_record(
        actor=actor,
        verb=f"rollout.canary_{'promote_now' if action == 'promote' else 'abort'}",
        obj=rollout,
        before=before,
        after={"decision": action, **({"reason": reason} if reason else {})},
    )
    queue_run(rollout.pk)


def canary_promote_now(*, rollout_id: int, actor) -> Rollout:
    """Skip a canary's remaining steps and promote it now: the environment's approvers only
    (never the requester where they may not approve their own request), audited."""
    with transaction.atomic():
        rollout = _locked_canary(rollout_id)
        refusal = selectors.canary_denials(rollout, actor)["promote"]
        if refusal:
            raise PermissionDenied(refusal)
        _canary_decide(rollout=rollout, actor=actor, action="promote", reason="")
    return rollout


def canary_abort(*, rollout_id: int, actor, reason: str = "") -> Rollout:
    """Stop a canary: all traffic back to stable, the canary removed, the alias untouched. The
    requester or the environment's approvers, audited."""
    reason = (reason or "").strip()
    if len(reason) > 10000:
        raise ServiceError("The reason is at most 10000 characters.", field="reason")
    with transaction.atomic():
        rollout = _locked_canary(rollout_id)
        refusal = selectors.canary_denials(rollout, actor)["abort"]
        if refusal:
            raise PermissionDenied(refusal)
        _canary_decide(rollout=rollout, actor=actor, action="abort", reason=reason)
    return rollout


def canary_reconcile(*, now=None) -> list[int]:
    """The controller: queue every canary whose check is due (by id; the claim lets one worker
    in). A due canary no worker takes yet is sent again next time, so its messages expire."""
    now = now or timezone.now()
    due = list(
        Rollout.objects.filter(state=Rollout.RUNNING, next_check_at__lte=now)
        .order_by("next_check_at")
        .values_list("pk", flat=True)
    )
    with transaction.atomic():
        for rollout_id in due:
            queue_run(rollout_id, expires=2 * settings.CANARY_RECONCILE_SECONDS)
    return due


def rollout_finish(*, rollout_id: int, state: str, reason: str = "") -> Rollout:
    """The end of a rollout: the deployment now serves it (live), still serves the revision
    before it (rolled_back, failed) or serves nothing (done after an undeploy)."""
    with transaction.atomic():
        rollout = Rollout.objects.select_for_update().select_related("deployment").get(pk=rollout_id)
        if rollout.state not in Rollout.ACTIVE:
            return rollout
        before = rollout.state
        rollout.state, rollout.reason, rollout.finished_at = state, reason or rollout.reason, timezone.now()
        rollout.heartbeat_at = rollout.next_check_at = None
        rollout.save(update_fields=["state", "reason", "finished_at", "heartbeat_at", "next_check_at"])
        deployment = Deployment.objects.select_for_update().get(pk=rollout.deployment_id)
        if state == Rollout.LIVE:
            deployment.live_rollout, deployment.state = rollout, Deployment.SERVING
            deployment.drift_state, deployment.drift_diff = Deployment.IN_SYNC, []
            # Only what serves is guarded: the revision this one replaced stops being watched.
            Rollout.objects.filter(deployment=deployment, guard_state="watching").exclude(pk=rollout.pk).update(
                guard_state="ended"
            )
            _guard_start(rollout)
        elif state == Rollout.DONE and rollout.kind == Rollout.UNDEPLOY:
            deployment.live_rollout, deployment.state = None, Deployment.UNDEPLOYED
            deployment.drift_state, deployment.drift_diff = Deployment.UNKNOWN, []
        deployment.save(update_fields=["live_rollout", "state", "drift_state", "drift_diff"])
        audit_record(
            actor="worker",
            verb=f"rollout.{state}",
            obj=rollout,
            before={"state": before},
            after={
                "state": state,
                "reason": rollout.reason,
                "version": rollout.version.version if rollout.version else None,
            },
        )
        if rollout.is_canary and rollout.request_id:
            event = "canary.completed" if state == Rollout.LIVE else "canary.aborted"
            notify.on_commit(
                rollout.request_id,
                event,
                extra={"canary": {**_canary_summary(rollout), "outcome": state, "reason": rollout.reason}},
                detail=f"Revision {rollout.revision}: {rollout.get_state_display().lower()}."
                + (f" {rollout.reason}" if rollout.reason else ""),
            )
    return rollout


def deployment_record_drift(*, deployment_id: int, changes: list[dict]) -> Deployment:
    """Store the latest drift check; an audit event when the deployment goes out of sync or back."""
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().get(pk=deployment_id)
        state = Deployment.OUT_OF_SYNC if changes else Deployment.IN_SYNC
        before = deployment.drift_state
        deployment.drift_state, deployment.drift_diff = state, changes
        deployment.drift_checked_at = timezone.now()
        deployment.save(update_fields=["drift_state", "drift_diff", "drift_checked_at"])
        if state != before and not (before == Deployment.UNKNOWN and state == Deployment.IN_SYNC):
            audit_record(
                actor="worker",
                verb=f"deployment.{state}",
                obj=deployment,
                before={"drift": before},
                after={"drift": state, "changes": changes},
            )
    return deployment


# --- the guard after a rollout ----------------------------------------------


def _guard_start(rollout: Rollout) -> None:
    """A version that just went live is watched for the target's guard_minutes, if the
    target sets a threshold (inside rollout_finish's transaction)."""
    target = DeploymentTarget.objects.get(deployments=rollout.deployment_id)
    if rollout.kind not in (Rollout.DEPLOY, Rollout.ROLLBACK) or not (
        target.guard_error_rate is not None or target.guard_p95_ms is not None
    ):
        return
    rollout.guard_state = "watching"
    rollout.guard_until = timezone.now() + timedelta(minutes=target.guard_minutes)
    rollout.save(update_fields=["guard_state", "guard_until"])


def rollout_guard_passed(*, rollout_id: int) -> None:
    with transaction.atomic():
        changed = Rollout.objects.filter(pk=rollout_id, guard_state="watching").update(guard_state="passed")
        if changed:
            audit_record(
                actor="worker",
                verb="rollout.guard_passed",
                object_type="deployer.rollout",
                object_id=str(rollout_id),
                after={"guard": "passed"},
            )


def rollout_guard_breached(*, rollout_id: int, reason: str) -> Rollout | None:
    """The live version breached its guard: it is marked rolled back with the reason and an
    automatic rollback to the revision before it is queued (no approval: it restores what
    was already approved and served). Returns that rollback, or None when there is nothing
    earlier to return to."""
    with transaction.atomic():
        rollout = (
            Rollout.objects.select_for_update(of=("self",))
            .select_related("restore_to__version")
            .filter(pk=rollout_id, guard_state="watching")
            .first()
        )
        if rollout is None:
            return None
        deployment = _locked_deployment(rollout.deployment_id)
        rollout.guard_state = "breached"
        good = rollout.restore_to
        if good is None or good.version is None or deployment.live_rollout_id != rollout.pk:
            rollout.reason = f"Guard breached: {reason} No earlier revision to return to; it keeps serving."
            rollout.save(update_fields=["guard_state", "reason"])
            audit_record(actor="worker", verb="rollout.guard_breached", obj=rollout, after={"reason": rollout.reason})
            return None
        rollout.state = Rollout.ROLLED_BACK
        rollout.reason = f"Guard breached: {reason} Rolled back to revision {good.revision} (v{good.version.version})."
        rollout.save(update_fields=["guard_state", "state", "reason"])
        audit_record(
            actor="worker",
            verb="rollout.guard_breached",
            obj=rollout,
            before={"state": Rollout.LIVE},
            after={"state": Rollout.ROLLED_BACK, "reason": rollout.reason},
        )
        back = Rollout.objects.create(
            deployment=deployment,
            revision=_next_revision(deployment),
            kind=Rollout.AUTO_ROLLBACK,
            version=good.version,
            steps=steps_for(AUTO_ROLLBACK_STEPS),
            restore_to=None,
            rolls_back=rollout,
            reason=rollout.reason,
        )
        audit_record(
            actor="worker",
            verb="rollout.created",
            obj=back,
            after={"kind": back.kind, "version": good.version.version, "rolls_back": rollout.revision},
        )
        queue_run(back.pk)
    return back
