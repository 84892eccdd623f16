"""Every promotion state change: one function per verb. Each locks the request row,
checks the current state, changes it, writes its audit event in the same transaction,
and queues follow-up work (notifications, deployment) on commit."""

import logging
from datetime import timedelta

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from console.audit.services import audit_record
from console.errors import Conflict, NotFound, ServiceError, UpstreamUnavailable
from registry import gateway
from registry.models import ModelVersion, RegisteredModel

from . import gates, notify, selectors
from .models import Comment, Environment, LiveSpan, PromotionRequest, Review
from .webhook_address import validate_webhook_url, webhook_label

log = logging.getLogger(__name__)
R = PromotionRequest
# The registry never imports the deployer: it queues the deployment by task name.
DEPLOY_TASK = "deployer.deploy_promotion"
COMMENT_MAX = 10000


def _queue_deployment(request_id: int) -> None:
    from console.celery import app

    app.send_task(DEPLOY_TASK, args=[request_id])


def _snapshot(req: PromotionRequest) -> dict:
    return {"state": req.state, "version": req.version.version, "environment": req.environment.name}


def _locked(request_id: int) -> PromotionRequest:
    req = (PromotionRequest.objects.select_for_update(of=("self",))
           .select_related("model", "version", "environment", "requested_by").filter(pk=request_id).first())
    if req is None:
        raise NotFound(f"Promotion request #{request_id} does not exist.")
    return req


def _clean_text(value, *, field: str, required: bool, what: str) -> str:
    value = (value or "").strip() if isinstance(value, str | type(None)) else None
    if value is None:
        raise ServiceError(f"{what} must be text.", field=field)
    if required and not value:
        raise ServiceError(f"{what} is required: say why.", field=field)
    if len(value) > COMMENT_MAX:
        raise ServiceError(f"{what} is at most {COMMENT_MAX} characters.", field=field)
    return value


# --- gates ------------------------------------------------------------------

def gates_evaluate(*, version: ModelVersion, environment: Environment, breaking_change: bool) -> list[dict]:
    """Read what the gates need (the run from MLflow, live versions from the database) and
    evaluate them. Does network I/O: call it outside any transaction."""
    metrics = None
    if version.run_id and environment.metric_thresholds:
        try:
            metrics = gateway.get_run(version.run_id).metrics
        except gateway.MlflowError as exc:
            log.warning("Gates could not read run %s: %s", version.run_id, exc)
    candidate = gates.Candidate(version=version.version, signature=version.signature, servable=version.servable,
                                serving_note=version.serving_note, run_id=version.run_id, metrics=metrics)
    span = selectors.live_span(environment=environment, model=version.model)
    live_signature = None
    if span is not None:
        live = ModelVersion.objects.filter(model=version.model, version=span.version_number).first()
        live_signature = live.signature if live else None
    previous = selectors.previous_environment(environment)
    was_live = previous is not None and selectors.was_live(environment=previous, model=version.model,
                                                           version_number=version.version)
    results = gates.evaluate(policy=environment, candidate=candidate,
                             live_version=span.version_number if span else None, live_signature=live_signature,
                             previous_env=previous.name if previous else None, was_live_in_previous=was_live,
                             breaking_change=breaking_change)
    return [r.as_dict() for r in results]


# --- the request lifecycle --------------------------------------------------

def promotion_request(*, actor, version: ModelVersion, environment: Environment, justification: str,
                      breaking_change: bool = False, is_rollback: bool = False) -> PromotionRequest:
    justification = _clean_text(justification, field="justification", required=True, what="Justification")
    if version.status != ModelVersion.READY:
        raise ServiceError(f"{version} is {version.status}, not READY.", field="version")
    results = gates_evaluate(version=version, environment=environment, breaking_change=breaking_change)
    failed = [g for g in results if not g["passed"]]
    now = timezone.now()
    with transaction.atomic():
        superseded = list(PromotionRequest.objects.select_for_update()
                          .filter(model=version.model, environment=environment, state__in=R.OPEN))
        for old in superseded:
            before = old.state
            old.state, old.state_reason = R.CANCELLED, f"Superseded by a newer request for v{version.version}."
            old.save(update_fields=["state", "state_reason", "updated_at"])
            audit_record(actor=actor, verb="promotion.superseded", obj=old, before={"state": before},
                         after={"state": old.state, "reason": old.state_reason})
        req = PromotionRequest.objects.create(
            model=version.model, version=version, environment=environment, requested_by=actor,
            justification=justification, breaking_change=breaking_change, is_rollback=is_rollback,
            gate_results=results, gates_checked_at=now)
        if failed:
            req.state = R.BLOCKED
            req.state_reason = "Blocked by: " + "; ".join(f"{g['gate']} ({g['reason']})" for g in failed)
        elif environment.required_approvals == 0:
            req.state, req.decided_at, req.deployment_queued_at = R.APPROVED, now, now
            req.state_reason = "No approval required in this environment."
        else:
            req.state = R.PENDING
            req.expires_at = now + timedelta(hours=environment.request_ttl_hours)
        req.save()
        PromotionRequest.objects.filter(pk__in=[o.pk for o in superseded]).update(superseded_by=req)
        audit_record(actor=actor, verb="promotion.requested", obj=req, before=None,
                     after={**_snapshot(req), "justification": justification, "breaking_change": breaking_change,
                            "gates": results})
        notify.on_commit(req.pk, "promotion.requested")
        if req.state == R.APPROVED:
            transaction.on_commit(lambda: _queue_deployment(req.pk))
    return req


def _check_reviewer(actor, req: PromotionRequest) -> None:
    env = req.environment
    if req.requested_by_id == actor.pk and not env.allow_self_approval:
        raise PermissionDenied("You requested this promotion; another approver must review it.")
    group = selectors.approver_group(env)
    if group is None or not actor.groups.filter(pk=group.pk).exists():
        raise PermissionDenied(f"Only members of the {group.name if group else 'approver'} group may review "
                               f"promotions to {env.name}.")


def _locked_for_review(actor, request_id: int, outcome: str) -> PromotionRequest:
    """Lock a request and check that ``actor`` may review it now (in the caller's transaction)."""
    req = _locked(request_id)
    if req.state != R.PENDING:
        raise Conflict(f"Request #{req.pk} is {req.get_state_display().lower()}; only pending requests "
                       f"can be {outcome}.")
    _check_reviewer(actor, req)
    if req.reviews.filter(reviewer=actor).exists():
        raise Conflict("You already reviewed this request.")
    return req


def promotion_approve(*, actor, request_id: int, comment: str = "") -> PromotionRequest:
    comment = _clean_text(comment, field="comment", required=False, what="Comment")
    with transaction.atomic():
        req = _locked_for_review(actor, request_id, "approved")
        Review.objects.create(request=req, reviewer=actor, decision=Review.APPROVE, comment=comment)
        audit_record(actor=actor, verb="promotion.reviewed", obj=req, after={"decision": "approve", "comment": comment})
        approvals = req.reviews.filter(decision=Review.APPROVE).count()
        if approvals >= req.environment.required_approvals:
            now = timezone.now()
            req.state, req.decided_at, req.deployment_queued_at = R.APPROVED, now, now
            req.state_reason = f"Approved by {approvals} of {req.environment.required_approvals} required."
            req.save(update_fields=["state", "decided_at", "deployment_queued_at", "state_reason", "updated_at"])
            audit_record(actor=actor, verb="promotion.approved", obj=req, before={"state": R.PENDING},
                         after={"state": R.APPROVED, "approvals": approvals})
            notify.on_commit(req.pk, "promotion.approved")
            transaction.on_commit(lambda: _queue_deployment(req.pk))
    return req


def promotion_reject(*, actor, request_id: int, comment: str) -> PromotionRequest:
    comment = _clean_text(comment, field="comment", required=True, what="A comment explaining the rejection")
    with transaction.atomic():
        req = _locked_for_review(actor, request_id, "rejected")
        Review.objects.create(request=req, reviewer=actor, decision=Review.REJECT, comment=comment)
        req.state, req.decided_at, req.state_reason = R.REJECTED, timezone.now(), f"Rejected by {actor}: {comment}"
        req.save(update_fields=["state", "decided_at", "state_reason", "updated_at"])
        audit_record(actor=actor, verb="promotion.rejected", obj=req, before={"state": R.PENDING},
                     after={"state": R.REJECTED, "comment": comment})
        notify.on_commit(req.pk, "promotion.rejected")
    return req


def promotion_cancel(*, actor, request_id: int, reason: str = "") -> PromotionRequest:
    reason = _clean_text(reason, field="reason", required=False, what="Reason")
    with transaction.atomic():
        req = _locked(request_id)
        if req.requested_by_id != actor.pk and not actor.has_perm("promotions.cancel_any_promotionrequest"):
            raise PermissionDenied("Only the requester or an admin can cancel this request.")
        if req.state not in (*R.OPEN, R.APPROVED):
            raise Conflict(f"Request #{req.pk} is {req.get_state_display().lower()}; it can no longer be cancelled.")
        before = req.state
        req.state, req.state_reason = R.CANCELLED, f"Cancelled by {actor}" + (f": {reason}" if reason else ".")
        req.save(update_fields=["state", "state_reason", "updated_at"])
        audit_record(actor=actor, verb="promotion.cancelled", obj=req, before={"state": before},
                     after={"state": R.CANCELLED, "reason": reason})
        notify.on_commit(req.pk, "promotion.cancelled")
    return req


def promotion_comment(*, actor, request_id: int, body: str, reply_to: int | None = None) -> Comment:
    body = _clean_text(body, field="body", required=True, what="Comment")
    with transaction.atomic():
        req = _locked(request_id)
        parent = None
        if reply_to is not None:
            parent = req.comments.filter(pk=reply_to).first()
            if parent is None:
                raise ServiceError(f"Comment {reply_to} is not on request #{req.pk}.", field="reply_to")
        comment = Comment.objects.create(request=req, author=actor, body=body, reply_to=parent)
        audit_record(actor=actor, verb="promotion.commented", obj=req, after={"comment": body, "reply_to": reply_to})
    return comment


def promotions_expire(*, now=None) -> int:
    """Expire pending requests past their deadline (periodic; safe to run twice)."""
    now = now or timezone.now()
    expired = 0
    for pk in PromotionRequest.objects.filter(state=R.PENDING, expires_at__lte=now).values_list("pk", flat=True):
        with transaction.atomic():
            req = _locked(pk)
            if req.state != R.PENDING:
                continue
            req.state, req.state_reason = R.EXPIRED, "No decision before the request expired."
            req.save(update_fields=["state", "state_reason", "updated_at"])
            audit_record(actor="system", verb="promotion.expired", obj=req, before={"state": R.PENDING},
                         after={"state": R.EXPIRED})
            notify.on_commit(req.pk, "promotion.expired")
            expired += 1
    return expired


# --- environments -------------------------------------------------------------

def _env_snapshot(env: Environment) -> dict:
    return {
        "name": env.name, "position": env.position, "alias": env.alias,
        "required_approvals": env.required_approvals,
        "approver_group": env.approver_group.name if env.approver_group_id else None,
        "allow_self_approval": env.allow_self_approval, "require_previous": env.require_previous,
        "metric_thresholds": env.metric_thresholds, "require_signature": env.require_signature,
        "require_compatible_signature": env.require_compatible_signature,
        "require_servable": env.require_servable, "request_ttl_hours": env.request_ttl_hours,
        "webhook": webhook_label(env.webhook_url),  # the host and a fingerprint, never the path
    }


def environment_save(*, actor, environment: Environment, metric_thresholds: list, new_webhook_secret: str = "",
                     clear_webhook_secret: bool = False) -> Environment:
    """Create or change an environment and its policy, with its audit event in one
    transaction. The secret is write-only: the audit records that it changed, never its value."""
    try:
        metric_thresholds = gates.validate_thresholds(metric_thresholds)
    except ValueError as exc:
        raise ServiceError(str(exc), field="thresholds") from None
    environment.webhook_url = validate_webhook_url(environment.webhook_url)
    env = environment
    with transaction.atomic():
        created = env.pk is None
        before = None
        if not created:
            before = _env_snapshot(Environment.objects.select_for_update(of=("self",)).select_related("approver_group")
                                   .get(pk=env.pk))
        env.metric_thresholds = metric_thresholds
        secret_changed = False
        if new_webhook_secret:
            env.webhook_secret, secret_changed = new_webhook_secret, True
        elif clear_webhook_secret and env.webhook_secret:
            env.webhook_secret, secret_changed = "", True
        env.save()
        after = _env_snapshot(env)
        if before is not None:
            changed = [k for k in after if before[k] != after[k]]
            before, after = {k: before[k] for k in changed}, {k: after[k] for k in changed}
        if secret_changed:
            after["webhook_secret_changed"] = True
        audit_record(actor=actor, verb="environment.created" if created else "environment.updated", obj=env,
                     before=before, after=after)
    return env


# --- what the deployer calls ------------------------------------------------

def promotion_start_deploying(*, request_id: int) -> bool:
    """Claim an approved request for deployment; False if someone else already did."""
    with transaction.atomic():
        req = _locked(request_id)
        if req.state != R.APPROVED:
            return False
        req.state = R.DEPLOYING
        req.save(update_fields=["state", "updated_at"])
        audit_record(actor="worker", verb="promotion.deploying", obj=req, before={"state": R.APPROVED},
                     after={"state": R.DEPLOYING})
    return True


def _move_alias(model: RegisteredModel, alias: str, version: int | None) -> None:
    """MLflow first; the mirror's alias map follows in the caller's transaction."""
    try:
        if version is None:
            gateway.delete_alias(model.name, alias)
        else:
            gateway.set_alias(model.name, alias, version)
    except gateway.MlflowNotFound:
        if version is not None:
            raise
    except gateway.MlflowError as exc:
        raise UpstreamUnavailable(f"MLflow could not move alias {alias!r}: {exc}") from exc


def _set_mirror_alias(model: RegisteredModel, alias: str, version: int | None) -> None:
    model = RegisteredModel.objects.select_for_update().get(pk=model.pk)
    aliases = dict(model.aliases)
    if version is None:
        aliases.pop(alias, None)
    else:
        aliases[alias] = version
    model.aliases = dict(sorted(aliases.items()))
    model.save(update_fields=["aliases", "synced_at"])
    for mv in model.versions.all():
        wanted = sorted(a for a, v in model.aliases.items() if v == mv.version)
        if mv.aliases != wanted:
            mv.aliases = wanted
            mv.save(update_fields=["aliases", "synced_at"])


def _start_span(req: PromotionRequest, version_number: int, at) -> None:
    LiveSpan.objects.filter(environment=req.environment, model=req.model, ended_at__isnull=True).update(ended_at=at)
    LiveSpan.objects.create(environment=req.environment, model=req.model, version_number=version_number,
                            request=req, started_at=at)


def promotion_mark_live(*, request_id: int) -> PromotionRequest:
    req = PromotionRequest.objects.select_related("model", "version", "environment").get(pk=request_id)
    if req.state == R.LIVE:
        return req  # already done: running twice gives the same end state
    _move_alias(req.model, req.environment.alias, req.version.version)
    with transaction.atomic():
        req = _locked(request_id)
        if req.state != R.DEPLOYING:
            raise Conflict(f"Request #{req.pk} is {req.state}, not deploying.")
        now = timezone.now()
        _start_span(req, req.version.version, now)
        _set_mirror_alias(req.model, req.environment.alias, req.version.version)
        req.state = R.LIVE
        req.save(update_fields=["state", "updated_at"])
        audit_record(actor="worker", verb="promotion.live", obj=req, before={"state": R.DEPLOYING},
                     after={"state": R.LIVE, "alias": req.environment.alias, "version": req.version.version})
        notify.on_commit(req.pk, "promotion.live")
    return req


def promotion_mark_failed(*, request_id: int, reason: str, rolled_back: bool = False) -> PromotionRequest:
    """The deployment did not go live; the alias never moved. rolled_back: the deployer
    restored the previous revision."""
    with transaction.atomic():
        req = _locked(request_id)
        if req.state != R.DEPLOYING:
            raise Conflict(f"Request #{req.pk} is {req.state}, not deploying.")
        req.state = R.ROLLED_BACK if rolled_back else R.FAILED
        req.state_reason = reason
        req.save(update_fields=["state", "state_reason", "updated_at"])
        audit_record(actor="worker", verb=f"promotion.{req.state}", obj=req, before={"state": R.DEPLOYING},
                     after={"state": req.state, "reason": reason})
        notify.on_commit(req.pk, f"promotion.{req.state}")
    return req


def promotion_roll_back_live(*, request_id: int, reason: str) -> PromotionRequest:
    """A live version was taken back out (e.g. by the post-rollout guard): the version that
    served before it serves again, and the alias follows."""
    req = PromotionRequest.objects.select_related("model", "version", "environment").get(pk=request_id)
    previous = (LiveSpan.objects.filter(environment=req.environment, model=req.model, ended_at__isnull=False)
                .exclude(request=req).order_by("-started_at").first())
    restored = previous.version_number if previous else None
    if req.state == R.LIVE:
        _move_alias(req.model, req.environment.alias, restored)
    with transaction.atomic():
        req = _locked(request_id)
        if req.state != R.LIVE:
            raise Conflict(f"Request #{req.pk} is {req.state}, not live.")
        now = timezone.now()
        LiveSpan.objects.filter(environment=req.environment, model=req.model, ended_at__isnull=True).update(ended_at=now)
        if restored is not None:
            LiveSpan.objects.create(environment=req.environment, model=req.model, version_number=restored,
                                    request=previous.request, started_at=now)
        _set_mirror_alias(req.model, req.environment.alias, restored)
        req.state, req.state_reason = R.ROLLED_BACK, reason
        req.save(update_fields=["state", "state_reason", "updated_at"])
        audit_record(actor="worker", verb="promotion.rolled_back", obj=req, before={"state": R.LIVE},
                     after={"state": R.ROLLED_BACK, "reason": reason, "restored_version": restored})
        notify.on_commit(req.pk, "promotion.rolled_back")
    return req


def alias_restore(*, actor, model: RegisteredModel, environment: Environment) -> int | None:
    """Put an environment alias that was moved in MLflow behind Modelgate's back where the
    workflow left it."""
    span = selectors.live_span(environment=environment, model=model)
    expected = span.version_number if span else None
    before = model.aliases.get(environment.alias)
    _move_alias(model, environment.alias, expected)
    with transaction.atomic():
        _set_mirror_alias(model, environment.alias, expected)
        audit_record(actor=actor, verb="alias.restored", obj=model,
                     before={"alias": environment.alias, "version": before},
                     after={"alias": environment.alias, "version": expected})
    return expected


def promotion_gates_recheck(*, request_id: int) -> bool:
    """Evaluate the gates again just before deployment (metrics or the live version may have
    changed since the request). On a failure the request fails with the reasons; the
    deployer calls this after claiming the request and before touching anything."""
    req = PromotionRequest.objects.select_related("version__model", "environment").get(pk=request_id)
    results = gates_evaluate(version=req.version, environment=req.environment, breaking_change=req.breaking_change)
    failed = [g for g in results if not g["passed"]]
    with transaction.atomic():
        req = _locked(request_id)
        req.gate_results, req.gates_checked_at = results, timezone.now()
        req.save(update_fields=["gate_results", "gates_checked_at", "updated_at"])
        audit_record(actor="worker", verb="promotion.gates_rechecked", obj=req,
                     after={"passed": not failed, "gates": results})
    if failed and req.state == R.DEPLOYING:
        promotion_mark_failed(request_id=request_id, reason="A gate failed just before deployment: " + "; ".join(
            f"{g['gate']} ({g['reason']})" for g in failed))
    return not failed


def live_end(*, actor, model: RegisteredModel, environment: Environment) -> None:
    """The model no longer serves in the environment (it was undeployed): its alias is
    removed in MLflow first, then the live span ends. Safe to run twice."""
    before = model.aliases.get(environment.alias)
    _move_alias(model, environment.alias, None)
    with transaction.atomic():
        ended = LiveSpan.objects.filter(environment=environment, model=model, ended_at__isnull=True) \
            .update(ended_at=timezone.now())
        _set_mirror_alias(model, environment.alias, None)
        if ended or before is not None:
            audit_record(actor=actor, verb="alias.removed", obj=model,
                         before={"alias": environment.alias, "version": before},
                         after={"alias": environment.alias, "version": None})
