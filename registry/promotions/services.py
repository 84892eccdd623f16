"""Every promotion state change: one function per verb. Each locks the request row,
checks the current state, changes it, writes its audit event in the same transaction,
and queues follow-up work (notifications, deployment) on commit."""

import logging
from dataclasses import dataclass
from datetime import timedelta

from celery import current_app
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from console import perms
from console.audit.services import audit_record
from console.errors import Conflict, NotFound, ServiceError, UpstreamUnavailable
from console.transactions import on_commit_safely
from registry import gateway
from registry.models import ModelVersion, RegisteredModel

from . import canary_plan, gates, notify, selectors
from .models import (
    Comment,
    Environment,
    LiveSpan,
    PolicyChange,
    PromotionRequest,
    Review,
)
from .webhook_address import validate_webhook_url, webhook_label

log = logging.getLogger(__name__)
R = PromotionRequest
# The registry never imports the deployer: it queues the deployment by task name.
DEPLOY_TASK = "deployer.deploy_promotion"
COMMENT_MAX = 10000


# Kinds that always go all at once, whatever the environment's strategy, and why: the request
# snapshot says so, so the page and the API never suggest a canary where none will run.
_ALWAYS_ALL_AT_ONCE = {
    R.ROLLBACK: "a rollback returns at once to a version that served before",
    R.REDEPLOY: "a redeploy re-applies what already serves",
    R.UNDEPLOY: "an undeploy puts no new version in front of traffic",
}


def _queue_deployment(request_id: int) -> None:
    current_app.send_task(DEPLOY_TASK, args=[request_id])


def _snapshot(req: PromotionRequest) -> dict:
    return {"state": req.state, "version": req.version.version, "environment": req.environment.name}


def _locked(request_id: int) -> PromotionRequest:
    req = (
        PromotionRequest.objects.select_for_update(of=("self",))
        .select_related("model", "version", "environment", "requested_by")
        .filter(pk=request_id)
        .first()
    )
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
        except gateway.MlflowUnavailable as exc:
            # Not a gate failure: the inputs cannot be read now. Nothing is written; retry.
            raise UpstreamUnavailable(
                f"MLflow could not be reached to read run {version.run_id}'s metrics for the gates; retry in a moment."
            ) from exc
        except gateway.MlflowError as exc:
            log.warning("Gates could not read run %s: %s", version.run_id, exc)
    candidate = gates.Candidate(
        version=version.version,
        signature=version.signature,
        servable=version.servable,
        serving_note=version.serving_note,
        run_id=version.run_id,
        metrics=metrics,
    )
    span = selectors.live_span(environment=environment, model=version.model)
    live_signature = None
    if span is not None:
        live = ModelVersion.objects.filter(model=version.model, version=span.version_number).first()
        live_signature = live.signature if live else None
    previous = selectors.previous_environment(environment)
    was_live = previous is not None and selectors.was_live(
        environment=previous, model=version.model, version_number=version.version
    )
    results = gates.evaluate(
        policy=environment,
        candidate=candidate,
        live_version=span.version_number if span else None,
        live_signature=live_signature,
        previous_env=previous.name if previous else None,
        was_live_in_previous=was_live,
        breaking_change=breaking_change,
    )
    return [r.as_dict() for r in results]


# --- the request lifecycle --------------------------------------------------


def promotion_request(
    *,
    actor,
    version: ModelVersion,
    environment: Environment,
    justification: str,
    breaking_change: bool = False,
    kind: str = R.PROMOTE,
) -> PromotionRequest:
    """Ask for ``version`` in ``environment``: a promotion, a rollback to it, or a redeploy or
    undeploy of it where it serves. A request whose gates fail is blocked: it stays blocked
    and supersedes nothing. Only a request that passes its gates supersedes the open ones
    for the same model and environment (their requesters are told when they are someone else)."""
    justification = _clean_text(justification, field="justification", required=True, what="Justification")
    if kind not in dict(R.KINDS):
        raise ServiceError(f"Unknown kind {kind!r}.", field="kind")
    if version.status != ModelVersion.READY:
        raise ServiceError(f"{version} is {version.status}, not READY.", field="version")
    # Redeploy and undeploy act on what already serves there: it passed its gates to get there.
    results = (
        []
        if kind in (R.REDEPLOY, R.UNDEPLOY)
        else gates_evaluate(version=version, environment=environment, breaking_change=breaking_change)
    )
    failed = [g for g in results if not g["passed"]]
    now = timezone.now()
    with transaction.atomic():
        environment = Environment.objects.select_for_update(of=("self",)).get(pk=environment.pk)
        plan = _plan_snapshot(environment, kind)
        req = PromotionRequest(
            model=version.model,
            version=version,
            environment=environment,
            requested_by=actor,
            justification=justification,
            breaking_change=breaking_change,
            kind=kind,
            gate_results=results,
            gates_checked_at=now,
            plan=plan,
        )
        superseded = []
        if failed:
            req.state = R.BLOCKED
            req.state_reason = "Blocked by: " + "; ".join(f"{g['gate']} ({g['reason']})" for g in failed)
        else:
            superseded = list(
                PromotionRequest.objects.select_for_update(of=("self",))
                .select_related("requested_by")
                .filter(model=version.model, environment=environment, state__in=R.OPEN)
            )
            _supersede(actor=actor, old=superseded, kind=kind, version=version)
            if environment.required_approvals == 0:
                req.state, req.decided_at, req.deployment_queued_at = R.APPROVED, now, now
                req.state_reason = "No approval required in this environment."
            else:
                req.state = R.PENDING
                req.expires_at = now + timedelta(hours=environment.request_ttl_hours)
        req.save()
        if superseded:
            PromotionRequest.objects.filter(pk__in=[o.pk for o in superseded]).update(superseded_by=req)
            for old in superseded:
                audit_record(
                    actor=actor,
                    verb="promotion.superseded",
                    obj=old,
                    before={"state": old.before_state},
                    after={
                        "state": R.CANCELLED,
                        "reason": old.state_reason,
                        "superseded_by": req.pk,
                        "requested_by": old.requested_by.get_username(),
                        "superseded_by_user": actor.get_username(),
                    },
                )
                if old.requested_by_id != actor.pk:
                    notify.email_on_commit(old.pk, "promotion.superseded")
        audit_record(
            actor=actor,
            verb="promotion.requested",
            obj=req,
            before=None,
            after={
                **_snapshot(req),
                "kind": kind,
                "justification": justification,
                "breaking_change": breaking_change,
                "gates": results,
                "plan": plan,
            },
        )
        notify.on_commit(req.pk, "promotion.requested")
        if req.state == R.APPROVED:
            on_commit_safely(lambda: _queue_deployment(req.pk), what=f"Deployment of request #{req.pk}")
    return req


def _plan_snapshot(environment: Environment, kind: str) -> dict:
    """The rollout plan the request carries, read from the policy under the environment's lock."""
    try:
        return canary_plan.snapshot(
            environment.rollout_strategy, environment.canary_plan, reason=_ALWAYS_ALL_AT_ONCE.get(kind, "")
        )
    except canary_plan.PlanError as exc:  # the services never store such a plan: a row edited around them
        raise ServiceError(
            f"{environment.name}'s canary plan cannot be followed ({exc}); an admin fixes it in its settings first.",
            field="environment",
        ) from None


def _supersede(*, actor, old: list[PromotionRequest], kind: str, version: ModelVersion) -> None:
    what = {
        R.PROMOTE: f"a promotion of v{version.version}",
        R.ROLLBACK: f"a rollback to v{version.version}",
        R.REDEPLOY: f"a redeploy of v{version.version}",
        R.UNDEPLOY: "an undeploy",
    }[kind]
    for req in old:
        req.before_state = req.state
        req.state = R.CANCELLED
        req.state_reason = f"Superseded by a newer request from {actor}: {what}."
        req.save(update_fields=["state", "state_reason", "updated_at"])


def _check_reviewer(actor, req: PromotionRequest) -> None:
    """Who may review: a member of the environment's approver group, never the requester
    (unless an unprotected environment allows self-approval). Being a superuser changes nothing."""
    env = req.environment
    if req.requested_by_id == actor.pk and not (env.allow_self_approval and not env.protected):
        raise PermissionDenied("You requested this; another approver must review it.")
    if not selectors.is_approver(actor, env):
        group = selectors.approver_group(env)
        raise PermissionDenied(
            f"Only members of the {group.name if group else 'approver'} group may review requests in {env.name}."
        )


def _locked_for_review(actor, request_id: int, outcome: str) -> PromotionRequest:
    """Lock a request and check that ``actor`` may review it now (in the caller's transaction)."""
    req = _locked(request_id)
    if req.state != R.PENDING:
        raise Conflict(
            f"Request #{req.pk} is {req.get_state_display().lower()}; only pending requests can be {outcome}."
        )
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
            audit_record(
                actor=actor,
                verb="promotion.approved",
                obj=req,
                before={"state": R.PENDING},
                after={"state": R.APPROVED, "approvals": approvals},
            )
            notify.on_commit(req.pk, "promotion.approved")
            on_commit_safely(lambda: _queue_deployment(req.pk), what=f"Deployment of request #{req.pk}")
    return req


def promotion_reject(*, actor, request_id: int, comment: str) -> PromotionRequest:
    comment = _clean_text(comment, field="comment", required=True, what="A comment explaining the rejection")
    with transaction.atomic():
        req = _locked_for_review(actor, request_id, "rejected")
        Review.objects.create(request=req, reviewer=actor, decision=Review.REJECT, comment=comment)
        req.state, req.decided_at, req.state_reason = R.REJECTED, timezone.now(), f"Rejected by {actor}: {comment}"
        req.save(update_fields=["state", "decided_at", "state_reason", "updated_at"])
        audit_record(
            actor=actor,
            verb="promotion.rejected",
            obj=req,
            before={"state": R.PENDING},
            after={"state": R.REJECTED, "comment": comment},
        )
        notify.on_commit(req.pk, "promotion.rejected")
    return req


def promotion_cancel(*, actor, request_id: int, reason: str = "") -> PromotionRequest:
    reason = _clean_text(reason, field="reason", required=False, what="Reason")
    with transaction.atomic():
        req = _locked(request_id)
        if not req.may_cancel(actor):
            raise PermissionDenied("Only the requester or an admin can cancel this request.")
        if not req.is_cancellable:
            raise Conflict(f"Request #{req.pk} is {req.get_state_display().lower()}; it can no longer be cancelled.")
        before = req.state
        req.state, req.state_reason = R.CANCELLED, f"Cancelled by {actor}" + (f": {reason}" if reason else ".")
        req.save(update_fields=["state", "state_reason", "updated_at"])
        audit_record(
            actor=actor,
            verb="promotion.cancelled",
            obj=req,
            before={"state": before},
            after={"state": R.CANCELLED, "reason": reason},
        )
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
            audit_record(
                actor="system",
                verb="promotion.expired",
                obj=req,
                before={"state": R.PENDING},
                after={"state": R.EXPIRED},
            )
            notify.on_commit(req.pk, "promotion.expired")
            expired += 1
    return expired


# --- environments -------------------------------------------------------------


def _env_snapshot(env: Environment) -> dict:
    return {
        "name": env.name,
        "position": env.position,
        "alias": env.alias,
        "required_approvals": env.required_approvals,
        "approver_group": env.approver_group.name if env.approver_group else None,
        "allow_self_approval": env.allow_self_approval,
        "require_previous": env.require_previous,
        "metric_thresholds": env.metric_thresholds,
        "require_signature": env.require_signature,
        "require_compatible_signature": env.require_compatible_signature,
        "require_servable": env.require_servable,
        "protected": env.protected,
        "rollout_strategy": env.rollout_strategy,
        "canary_plan": env.canary_plan,
        "request_ttl_hours": env.request_ttl_hours,
        "webhook": webhook_label(env.webhook_url),  # the host and a fingerprint, never the path
    }


@dataclass(frozen=True)
class EnvironmentSaved:
    environment: Environment
    # On a protected environment a policy change is not applied: it waits here for a second admin.
    policy_change: PolicyChange | None = None


_BOOLEAN_POLICY = (
    "allow_self_approval",
    "require_previous",
    "require_signature",
    "require_compatible_signature",
    "require_servable",
    "protected",
)


def _policy_values(env: Environment) -> dict:
    """The policy fields as JSON values (the approver group by name)."""
    values = {f: getattr(env, f) for f in Environment.POLICY_FIELDS if f != "approver_group"}
    values["approver_group"] = env.approver_group.name if env.approver_group else None
    return values


def _policy_clean(values: dict) -> dict:
    """Check a whole policy (after a change): types, thresholds, the rollout plan
    (canary_plan.clean_policy), the approver group exists, and no self-approval where the
    environment is protected. ServiceError names the field."""
    unknown = sorted(set(values) - set(Environment.POLICY_FIELDS))
    if unknown:
        raise ServiceError(f"{unknown[0]} is not a policy field.", field=unknown[0])
    cleaned = dict(values)
    for name in _BOOLEAN_POLICY:
        if name in cleaned and not isinstance(cleaned[name], bool):
            raise ServiceError(f"{name} must be true or false.", field=name)
    if "required_approvals" in cleaned:
        value = cleaned["required_approvals"]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
            raise ServiceError("required_approvals must be a whole number from 0 to 100.", field="required_approvals")
    if "metric_thresholds" in cleaned:
        try:
            cleaned["metric_thresholds"] = gates.validate_thresholds(cleaned["metric_thresholds"])
        except ValueError as exc:
            raise ServiceError(str(exc), field="metric_thresholds") from None
    if "rollout_strategy" in cleaned or "canary_plan" in cleaned:
        # A change may name one of the two; the whole policy is checked again after it.
        try:
            plan = canary_plan.clean_policy(
                cleaned.get("rollout_strategy", canary_plan.ALL_AT_ONCE), cleaned.get("canary_plan")
            )
        except canary_plan.PlanError as exc:
            if "canary_plan" in cleaned or exc.path == "rollout_strategy":
                raise ServiceError(str(exc), field=exc.path.split(".")[0]) from None
        else:
            if "canary_plan" in cleaned:
                cleaned["canary_plan"] = plan
    group = cleaned.get("approver_group")
    if group is not None and not (isinstance(group, str) and Group.objects.filter(name=group).exists()):
        raise ServiceError(f"There is no group {group!r}.", field="approver_group")
    if cleaned.get("protected") and cleaned.get("allow_self_approval"):
        raise ServiceError(
            "A protected environment cannot allow self-approval: a requester never approves their own request there.",
            field="allow_self_approval",
        )
    return cleaned


def _policy_apply(env: Environment, values: dict) -> None:
    for name, value in values.items():
        if name == "approver_group":
            env.approver_group = Group.objects.get(name=value) if value else None
        else:
            setattr(env, name, value)


def environment_save(
    *,
    actor,
    environment: Environment,
    metric_thresholds: list,
    new_webhook_secret: str = "",
    clear_webhook_secret: bool = False,
    reason: str = "",
) -> EnvironmentSaved:
    """Create or change an environment, with its audit event in one transaction: the one way
    an environment is saved (pages, the Django admin). On a protected environment the policy
    fields are not changed here: a change to them becomes a pending PolicyChange that a
    second admin confirms. The webhook secret is write-only: the audit records that it
    changed, never its value."""
    try:
        metric_thresholds = gates.validate_thresholds(metric_thresholds)
    except ValueError as exc:
        raise ServiceError(str(exc), field="thresholds") from None
    environment.webhook_url = validate_webhook_url(environment.webhook_url)
    env = environment
    env.metric_thresholds = metric_thresholds
    change = None
    with transaction.atomic():
        created = env.pk is None
        stored = None
        if not created:
            stored = Environment.objects.select_for_update(of=("self",)).select_related("approver_group").get(pk=env.pk)
        wanted = _policy_values(env)
        if stored is not None and stored.protected:
            current = _policy_values(stored)
            changes = {k: v for k, v in wanted.items() if v != current[k]}
            _policy_apply(env, current)  # the policy stays as it is until confirmed
            if changes:
                change = _policy_change_create(actor=actor, environment=stored, changes=changes, reason=reason)
        else:
            env.canary_plan = _policy_clean(wanted)["canary_plan"]
        before = None if stored is None else _env_snapshot(stored)  # None when created
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
        if created or after:
            audit_record(
                actor=actor,
                verb="environment.created" if created else "environment.updated",
                obj=env,
                before=before,
                after=after,
            )
    return EnvironmentSaved(environment=env, policy_change=change)


def _policy_change_create(*, actor, environment: Environment, changes: dict, reason: str) -> PolicyChange:
    """In the caller's transaction, with the environment row locked."""
    current = _policy_values(environment)
    changes = _policy_clean(changes)
    changes = {k: v for k, v in changes.items() if v != current[k]}
    if not changes:
        raise ServiceError("This changes nothing in the policy.", field=None)
    _policy_clean({**current, **changes})
    if environment.policy_changes.filter(state=PolicyChange.PENDING).exists():
        raise Conflict(
            f"A policy change of {environment.name} already waits for confirmation; it is confirmed or withdrawn first."
        )
    change = PolicyChange.objects.create(
        environment=environment,
        proposed=changes,
        current={k: current[k] for k in changes},
        reason=reason,
        proposed_by=actor,
    )
    audit_record(
        actor=actor,
        verb="environment.policy_change_proposed",
        obj=environment,
        before={k: current[k] for k in changes},
        after={"policy_change": change.pk, "proposed": changes, "proposed_by": actor.get_username(), "reason": reason},
    )
    return change


def policy_change_propose(*, actor, environment: Environment, changes: dict, reason: str = "") -> PolicyChange:
    """Propose new values for some of an environment's policy fields; they apply once a
    second admin confirms (policy_change_confirm)."""
    reason = _clean_text(reason, field="reason", required=False, what="Reason")
    if not isinstance(changes, dict) or not changes:
        raise ServiceError("Name at least one policy field to change.", field=None)
    with transaction.atomic():
        env = (
            Environment.objects.select_for_update(of=("self",)).select_related("approver_group").get(pk=environment.pk)
        )
        return _policy_change_create(actor=actor, environment=env, changes=changes, reason=reason)


def _locked_change(change_id: int, environment: Environment | None) -> PolicyChange:
    qs = PolicyChange.objects.select_for_update(of=("self",)).select_related("proposed_by", "environment")
    if environment is not None:
        qs = qs.filter(environment=environment)
    change = qs.filter(pk=change_id).first()
    if change is None:
        raise NotFound(f"Policy change #{change_id} does not exist.")
    if change.state != PolicyChange.PENDING:
        raise Conflict(
            f"Policy change #{change.pk} is {change.get_state_display().lower()}; only a pending "
            "change can be confirmed or withdrawn."
        )
    return change


def policy_change_confirm(*, actor, change_id: int, environment: Environment | None = None) -> PolicyChange:
    """A second admin confirms: the proposed values become the policy. The proposer never
    confirms their own change; both are named in the audit event."""
    with transaction.atomic():
        change = _locked_change(change_id, environment)
        if not actor.has_perm(perms.CHANGE_ENVIRONMENT):
            raise PermissionDenied("Only an admin may confirm a policy change.")
        if change.proposed_by_id == actor.pk:
            raise PermissionDenied("You proposed this change; a second admin must confirm it.")
        env = (
            Environment.objects.select_for_update(of=("self",))
            .select_related("approver_group")
            .get(pk=change.environment_id)
        )
        current = _policy_values(env)
        if any(current[k] != v for k, v in change.current.items()):
            raise Conflict("The policy changed since this was proposed; withdraw it and propose again.")
        _policy_apply(env, _policy_clean({**current, **change.proposed}))
        env.save()
        change.state, change.decided_by, change.decided_at = PolicyChange.CONFIRMED, actor, timezone.now()
        change.save(update_fields=["state", "decided_by", "decided_at"])
        audit_record(
            actor=actor,
            verb="environment.policy_change_confirmed",
            obj=env,
            before=change.current,
            after={
                **change.proposed,
                "policy_change": change.pk,
                "proposed_by": change.proposed_by.get_username(),
                "confirmed_by": actor.get_username(),
            },
        )
    return change


def policy_change_withdraw(*, actor, change_id: int, environment: Environment | None = None) -> PolicyChange:
    with transaction.atomic():
        change = _locked_change(change_id, environment)
        if change.proposed_by_id != actor.pk:
            raise PermissionDenied("Only the admin who proposed this change may withdraw it.")
        change.state, change.decided_by, change.decided_at = PolicyChange.WITHDRAWN, actor, timezone.now()
        change.save(update_fields=["state", "decided_by", "decided_at"])
        audit_record(
            actor=actor,
            verb="environment.policy_change_withdrawn",
            obj=change.environment,
            after={"policy_change": change.pk, "proposed": change.proposed, "proposed_by": actor.get_username()},
        )
    return change


# --- what the deployer calls ------------------------------------------------


def promotion_start_deploying(*, request_id: int) -> bool:
    """Claim an approved request for deployment; False if someone else already did."""
    with transaction.atomic():
        req = _locked(request_id)
        if req.state != R.APPROVED:
            return False
        req.state = R.DEPLOYING
        req.save(update_fields=["state", "updated_at"])
        audit_record(
            actor="worker",
            verb="promotion.deploying",
            obj=req,
            before={"state": R.APPROVED},
            after={"state": R.DEPLOYING},
        )
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
    LiveSpan.objects.create(
        environment=req.environment, model=req.model, version_number=version_number, request=req, started_at=at
    )


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
        audit_record(
            actor="worker",
            verb="promotion.live",
            obj=req,
            before={"state": R.DEPLOYING},
            after={"state": R.LIVE, "alias": req.environment.alias, "version": req.version.version},
        )
        notify.on_commit(req.pk, "promotion.live")
    return req


def promotion_mark_done(*, request_id: int) -> PromotionRequest:
    """A redeploy or undeploy request was carried out: a redeploy is live again (the alias
    already points at its version), an undeploy is done (the unalias step removed the alias)."""
    with transaction.atomic():
        req = _locked(request_id)
        final = R.DONE if req.kind == R.UNDEPLOY else R.LIVE
        if req.state == final:
            return req
        if req.state != R.DEPLOYING:
            raise Conflict(f"Request #{req.pk} is {req.state}, not deploying.")
        req.state = final
        req.save(update_fields=["state", "updated_at"])
        audit_record(
            actor="worker",
            verb=f"promotion.{final}",
            obj=req,
            before={"state": R.DEPLOYING},
            after={"state": final, "kind": req.kind},
        )
        notify.on_commit(req.pk, f"promotion.{final}")
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
        audit_record(
            actor="worker",
            verb=f"promotion.{req.state}",
            obj=req,
            before={"state": R.DEPLOYING},
            after={"state": req.state, "reason": reason},
        )
        notify.on_commit(req.pk, f"promotion.{req.state}")
    return req


def promotion_roll_back_live(*, request_id: int, reason: str) -> PromotionRequest:
    """A live version was taken back out (e.g. by the post-rollout guard): the version that
    served before it serves again, and the alias follows."""
    req = PromotionRequest.objects.select_related("model", "version", "environment").get(pk=request_id)
    previous = (
        LiveSpan.objects.filter(environment=req.environment, model=req.model, ended_at__isnull=False)
        .exclude(request=req)
        .order_by("-started_at")
        .first()
    )
    restored = previous.version_number if previous else None
    if req.state == R.LIVE:
        _move_alias(req.model, req.environment.alias, restored)
    with transaction.atomic():
        req = _locked(request_id)
        if req.state != R.LIVE:
            raise Conflict(f"Request #{req.pk} is {req.state}, not live.")
        now = timezone.now()
        LiveSpan.objects.filter(environment=req.environment, model=req.model, ended_at__isnull=True).update(
            ended_at=now
        )
        if previous is not None:
            LiveSpan.objects.create(
                environment=req.environment,
                model=req.model,
                version_number=previous.version_number,  # restored
                request=previous.request,
                started_at=now,
            )
        _set_mirror_alias(req.model, req.environment.alias, restored)
        req.state, req.state_reason = R.ROLLED_BACK, reason
        req.save(update_fields=["state", "state_reason", "updated_at"])
        audit_record(
            actor="worker",
            verb="promotion.rolled_back",
            obj=req,
            before={"state": R.LIVE},
            after={"state": R.ROLLED_BACK, "reason": reason, "restored_version": restored},
        )
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
        audit_record(
            actor=actor,
            verb="alias.restored",
            obj=model,
            before={"alias": environment.alias, "version": before},
            after={"alias": environment.alias, "version": expected},
        )
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
        audit_record(
            actor="worker", verb="promotion.gates_rechecked", obj=req, after={"passed": not failed, "gates": results}
        )
    if failed and req.state == R.DEPLOYING:
        promotion_mark_failed(
            request_id=request_id,
            reason="A gate failed just before deployment: " + "; ".join(f"{g['gate']} ({g['reason']})" for g in failed),
        )
    return not failed


def live_end(*, actor, model: RegisteredModel, environment: Environment) -> None:
    """The model no longer serves in the environment (it was undeployed): its alias is
    removed in MLflow first, then the live span ends. Safe to run twice."""
    before = model.aliases.get(environment.alias)
    _move_alias(model, environment.alias, None)
    with transaction.atomic():
        ended = LiveSpan.objects.filter(environment=environment, model=model, ended_at__isnull=True).update(
            ended_at=timezone.now()
        )
        _set_mirror_alias(model, environment.alias, None)
        if ended or before is not None:
            audit_record(
                actor=actor,
                verb="alias.removed",
                obj=model,
                before={"alias": environment.alias, "version": before},
                after={"alias": environment.alias, "version": None},
            )
