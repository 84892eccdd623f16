"""Reads for the deployment pages and API. Each one loads what its page shows in a fixed
number of queries, however many deployments or revisions there are."""

from datetime import datetime
from typing import TYPE_CHECKING

from django.db.models import OuterRef, Prefetch, Q, QuerySet, Subquery

from console.errors import NotFound
from deployer.canary import progress
from deployer.metrics import series
from deployer.models import Deployment, Rollout
from registry.promotions.models import PromotionRequest, Review
from registry.promotions.selectors import approver_group, is_approver

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser


def deployment_list(*, environment: str = "", model: str = "") -> QuerySet[Deployment]:
    """Every deployment with what serves now and its newest rollout's state and time
    (``last_rollout_id``, ``last_rollout_state``, ``last_rollout_at``), in one query."""
    newest = Rollout.objects.filter(deployment=OuterRef("pk")).order_by("-created_at", "-id")
    waiting = PromotionRequest.objects.filter(
        model=OuterRef("model"), environment=OuterRef("target__environment"), state__in=PromotionRequest.OPEN
    ).order_by("-created_at", "-id")
    qs = Deployment.objects.select_related("target__environment", "model", "live_rollout__version").annotate(
        pending_request_id=Subquery(waiting.values("pk")[:1]),
        pending_request_kind=Subquery(waiting.values("kind")[:1]),
        pending_request_state=Subquery(waiting.values("state")[:1]),
        last_rollout_id=Subquery(newest.values("pk")[:1]),
        last_rollout_revision=Subquery(newest.values("revision")[:1]),
        last_rollout_state=Subquery(newest.values("state")[:1]),
        last_rollout_at=Subquery(newest.values("created_at")[:1]),
    )
    if environment:
        qs = qs.filter(target__environment__name=environment)
    if model:
        qs = qs.filter(model__name=model)
    return qs.order_by("model__name", "target__environment__position", "pk")


def deployment_get(pk: int) -> Deployment:
    deployment = (
        Deployment.objects.select_related("target__environment", "model", "live_rollout__version").filter(pk=pk).first()
    )
    if deployment is None:
        raise NotFound(f"Deployment #{pk} does not exist.")
    return deployment


def rollout_get(pk: int) -> Rollout:
    rollout = (
        Rollout.objects.select_related(
            "deployment__target__environment", "deployment__model", "version", "request__requested_by", "requested_by"
        )
        .filter(pk=pk)
        .first()
    )
    if rollout is None:
        raise NotFound(f"Rollout #{pk} does not exist.")
    return rollout


def deployment_history(deployment: Deployment) -> QuerySet[Rollout]:
    """Every revision, newest first, with its version, requester, promotion request and
    that request's approving reviews (``request.approvals``, reviewer loaded)."""
    approvals = Review.objects.filter(decision=Review.APPROVE).select_related("reviewer").order_by("created_at", "id")
    return (
        Rollout.objects.filter(deployment=deployment)
        .select_related("version", "requested_by", "request__requested_by")
        .prefetch_related(Prefetch("request__reviews", queryset=approvals, to_attr="approvals"))
        .order_by("-revision")
    )


def open_requests(deployment: Deployment) -> QuerySet[PromotionRequest]:
    """Requests for this model in this environment waiting for approval (or approved and
    waiting for the deployer): what the deployment page shows as pending."""
    return (
        PromotionRequest.objects.filter(
            model_id=deployment.model_id,
            environment_id=deployment.target.environment_id,
            state__in=PromotionRequest.CANCELLABLE,
        )
        .select_related("requested_by", "version")
        .order_by("-created_at", "-id")
    )


def rollouts_finished_since(deployment: Deployment, since: datetime) -> QuerySet[Rollout]:
    """The deployment's rollouts that ended at or after ``since``, in the order they ended."""
    return (
        Rollout.objects.filter(deployment=deployment, finished_at__gte=since)
        .select_related("version")
        .order_by("finished_at")
    )


def active_rollout(deployment: Deployment) -> Rollout | None:
    """The rollout running now, or the oldest one waiting for it."""
    return (
        deployment.rollouts.filter(state__in=Rollout.ACTIVE)
        .select_related("version")
        .order_by("created_at", "id")
        .first()
    )


def rollouts_finished_after(when: datetime, *, after_id: int = 0) -> list[Rollout]:
    """Rollouts that ended after ``when`` (or at it, with a higher id), oldest first: what
    `make run` reports, one line each."""
    return list(
        Rollout.objects.select_related("deployment__target__environment", "deployment__model", "version")
        .filter(finished_at__isnull=False)
        .filter(Q(finished_at__gt=when) | Q(finished_at=when, pk__gt=after_id))
        .order_by("finished_at", "pk")
    )


def canary_denials(rollout: Rollout, user: "AbstractBaseUser | AnonymousUser") -> dict[str, str | None]:
    """Why ``user`` may not promote this canary early (``"promote"``) or abort it
    (``"abort"``), or None where they may: the environment's approvers promote, but never the
    requester where the environment refuses self-approval; the requester or an approver
    abort. ``services.canary_promote_now`` and ``canary_abort`` refuse exactly these, and the
    rollout page offers the buttons they leave. Whether the canary can still be decided on
    at all is ``Rollout.canary_refusal``."""
    env = rollout.deployment.environment
    approver = is_approver(user, env)
    req = rollout.request
    promote = None
    if not approver:
        group = approver_group(env)
        promote = (
            f"Only members of the {group.name if group else 'approver'} group may promote a canary in {env.name} early."
        )
    elif req is not None and req.requested_by_id == user.pk and not (env.allow_self_approval and not env.protected):
        promote = "You requested this promotion; another approver must promote its canary early."
    requester = req.requested_by_id if req is not None else rollout.requested_by_id
    abort = None
    if user.pk != requester and not approver:
        abort = f"Only the requester or an approver of {env.name} may abort this canary."
    return {"promote": promote, "abort": abort}


def canary_traffic(rollout: Rollout, *, now: datetime) -> dict:
    """The rollout page's charts: each track's traffic (``series.tracks_series``) over the
    canary's window (``progress.chart_window``: ``start`` and ``end`` in epoch seconds), the
    step markers, and ``live``: whether the page should ask again."""
    start, end, step = progress.chart_window(rollout, now=now)
    data = series.tracks_series(rollout.deployment_id, start, end, step, now=now)
    return {
        **data,
        "start": int(start.timestamp()),
        "end": int(end.timestamp()),
        "markers": progress.markers(rollout) if rollout.is_canary else [],
        "live": rollout.is_active,
    }
