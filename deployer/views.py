"""The deployment pages: what serves where, every revision of it, and each rollout's steps.

Thin: parse the form, call a service or selector, render. Every change goes through
``deployer.services``; the permission is checked here per view, and the buttons are only
hidden in the templates for users without it.
"""

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from console import perms
from console.errors import ServiceError
from console.forms import add_service_error
from console.htmx import render_page
from registry.promotions import selectors as promotion_selectors
from registry.promotions.models import PromotionRequest

from . import selectors, services
from .backends import backend_for
from .backends.errors import BackendError
from .canary import progress
from .endpoints import endpoint
from .forms import CanaryAbortForm, RedeployForm, RollbackForm, StopForm, UndeployForm
from .metrics.compare import before_after
from .metrics.series import summary
from .models import Deployment, Rollout

PAGE_SIZE = 50
VIEW, VIEW_ROLLOUT = perms.VIEW_DEPLOYMENT, perms.VIEW_ROLLOUT
OPERATE, REQUEST = perms.OPERATE_DEPLOYMENT, perms.REQUEST_PROMOTION
BREAK_GLASS = perms.BREAK_GLASS


def _redirect(request, url: str):
    response = redirect(url)
    if request.htmx:
        response["HX-Redirect"] = url
    return response


# --- list -------------------------------------------------------------------------


@permission_required(VIEW, raise_exception=True)
def deployment_list(request):
    filters = {
        "environment": request.GET.get("environment", "").strip()[:50],
        "model": request.GET.get("model", "").strip()[:1000],
    }
    page = Paginator(selectors.deployment_list(**filters), PAGE_SIZE).get_page(request.GET.get("page"))
    metrics = summary(page.object_list)
    for deployment in page.object_list:
        deployment.metrics = metrics[deployment.pk]
        deployment.health = deployment.health_for(deployment.metrics)
    query = request.GET.copy()
    query.pop("page", None)
    return render_page(
        request,
        "deployer/list.html",
        {
            "page": page,
            "filters": filters,
            "query": query.urlencode(),
            "environments": promotion_selectors.environment_list(),
        },
        partial="results",
    )


# --- one deployment -----------------------------------------------------------------


def _posted_revision(form: RollbackForm | None) -> int | None:
    try:
        return int(form.data.get("revision", "")) if form is not None else None
    except (TypeError, ValueError):
        return None


def _detail_context(request, deployment: Deployment, **extra) -> dict:
    history = list(selectors.deployment_history(deployment))
    for rollout in history:
        rollout.can_roll_back_to = deployment.rollback_refusal(rollout) is None
    active = next((r for r in reversed(history) if r.is_active), None)  # the oldest active one runs first
    rollback_form = extra.pop("rollback_form", None)
    user = request.user
    serving = deployment.is_serving
    return {
        "deployment": deployment,
        "endpoint": endpoint(deployment),
        "windows": WINDOWS,
        "history": history,
        "active": active,
        "can_operate": serving and active is None and user.has_perm(OPERATE),
        "can_roll_back": user.has_perm(REQUEST),
        "can_stop": serving and user.has_perm(BREAK_GLASS),
        "needs_approval": deployment.environment.required_approvals > 0,
        "open_requests": list(selectors.open_requests(deployment)),
        "undeploy_form": extra.pop("undeploy_form", None) or UndeployForm(),
        "stop_form": extra.pop("stop_form", None) or StopForm(),
        "rollback_form": rollback_form,
        # The row whose rollback form failed: it opens again with the errors and the text typed.
        "rollback_revision": _posted_revision(rollback_form),
        "error": extra.pop("error", ""),
        **extra,
    }


def _detail_page(request, deployment: Deployment, *, status: int = 200, **extra):
    return render_page(request, "deployer/detail.html", _detail_context(request, deployment, **extra), status=status)


@permission_required(VIEW, raise_exception=True)
def deployment_detail(request, pk):
    return _detail_page(request, selectors.deployment_get(pk))


WINDOWS = [(900, "15 min"), (3600, "1 h"), (21600, "6 h"), (86400, "24 h"), (604800, "7 days")]


@permission_required(VIEW, raise_exception=True)
def deployment_health(request, pk):
    """The replicas panel (htmx polls it): read from the cluster or the local server now."""
    deployment = selectors.deployment_get(pk)
    context = {"deployment": deployment, "health": None, "health_error": ""}
    if deployment.state == Deployment.SERVING:
        try:
            context["health"] = backend_for(deployment).health(deployment.name)
        except BackendError as exc:
            context["health_error"] = str(exc)
    return render(request, "deployer/_health.html", context)


def _after_operation(request, deployment, outcome, what: str):
    """A rollout queued at once goes to its page; a request for approval to the request's."""
    if isinstance(outcome, PromotionRequest):
        messages.success(
            request,
            f"{what.capitalize()} requested as request #{outcome.pk}: "
            f"{outcome.get_state_display().lower()} ({deployment.environment.name} "
            "requires approval).",
        )
        return _redirect(request, reverse("promotions:detail", kwargs={"pk": outcome.pk}))
    messages.success(request, f"Revision {outcome.revision} queued: {what} of {deployment}.")
    return _redirect(request, reverse("deployer:rollout", kwargs={"pk": outcome.pk}))


@require_POST
@permission_required(OPERATE, raise_exception=True)
def deployment_redeploy(request, pk):
    """Apply the live revision again: the Redeploy button, and "Re-apply" on drift. Where the
    environment requires approval it becomes a redeploy request."""
    deployment = selectors.deployment_get(pk)
    form = RedeployForm(request.POST)
    form.is_valid()
    try:
        outcome = services.rollout_redeploy(
            actor=request.user, deployment_id=deployment.pk, reason=form.cleaned_data.get("reason", "")
        )
    except ServiceError as exc:
        return _detail_page(request, selectors.deployment_get(pk), error=exc.message, status=exc.http_status)
    return _after_operation(request, deployment, outcome, "redeploy")


@require_POST
@permission_required(OPERATE, raise_exception=True)
def deployment_undeploy(request, pk):
    deployment = selectors.deployment_get(pk)
    form = UndeployForm(request.POST)
    if not form.is_valid():
        return _detail_page(request, deployment, undeploy_form=form, status=400)
    try:
        outcome = services.rollout_undeploy(
            actor=request.user, deployment_id=deployment.pk, reason=form.cleaned_data["reason"]
        )
    except ServiceError as exc:
        if add_service_error(form, exc, fields_only=True):
            return _detail_page(request, deployment, undeploy_form=form, status=exc.http_status)
        return _detail_page(request, selectors.deployment_get(pk), error=exc.message, status=exc.http_status)
    return _after_operation(request, deployment, outcome, "undeploy")


@require_POST
@permission_required(BREAK_GLASS, raise_exception=True)
def deployment_stop(request, pk):
    """Break-glass: stop at once without approval, with a mandatory reason."""
    deployment = selectors.deployment_get(pk)
    form = StopForm(request.POST)
    if not form.is_valid():
        return _detail_page(request, deployment, stop_form=form, status=400)
    try:
        rollout = services.deployment_break_glass_stop(
            actor=request.user, deployment_id=deployment.pk, reason=form.cleaned_data["reason"]
        )
    except ServiceError as exc:
        if add_service_error(form, exc, fields_only=True):
            return _detail_page(request, deployment, stop_form=form, status=exc.http_status)
        return _detail_page(request, selectors.deployment_get(pk), error=exc.message, status=exc.http_status)
    messages.warning(
        request, f"Break-glass: revision {rollout.revision} stops {deployment} now; the approvers have been told."
    )
    return _redirect(request, reverse("deployer:rollout", kwargs={"pk": rollout.pk}))


@require_POST
@permission_required(REQUEST, raise_exception=True)
def deployment_rollback(request, pk):
    """Ask for an earlier revision again: a promotion request, approved like any other."""
    deployment = selectors.deployment_get(pk)
    form = RollbackForm(request.POST)
    if form.is_valid():
        try:
            req = services.rollback_request(
                actor=request.user,
                deployment_id=deployment.pk,
                revision=form.cleaned_data["revision"],
                justification=form.cleaned_data["justification"],
            )
        except ServiceError as exc:
            add_service_error(form, exc)
            return _detail_page(request, deployment, rollback_form=form, status=exc.http_status)
        messages.success(request, f"Rollback requested as request #{req.pk}: {req.get_state_display().lower()}.")
        return _redirect(request, reverse("promotions:detail", kwargs={"pk": req.pk}))
    return _detail_page(request, deployment, rollback_form=form, status=400)


# --- one rollout -------------------------------------------------------------------


def _rollout_page(request, rollout: Rollout, *, status: int = 200, **extra):
    """The whole page; for htmx, what polls: a canary's panel with its steps (``?part=canary``,
    the rollout page), else the steps alone (the deployment and request pages poll those)."""
    partial = "canary" if request.GET.get("part") == "canary" else "steps"
    canary = progress.page(rollout)
    decide: dict[str, str | None] = {"promote": "", "abort": ""}  # no canary, or it is past deciding
    # The buttons a user may press, as the services would judge them (they judge again on POST).
    if canary is not None and rollout.canary_refusal() is None and (not request.htmx or partial == "canary"):
        decide = selectors.canary_denials(rollout, request.user)
    context = {
        "rollout": rollout,
        "deployment": rollout.deployment,
        "compared": None if request.htmx else before_after(rollout),
        "canary": canary,
        "can_promote": decide["promote"] is None,
        "can_abort": decide["abort"] is None,
        "abort_form": extra.pop("abort_form", None) or CanaryAbortForm(),
        "error": extra.pop("error", ""),
        **extra,
    }
    return render_page(request, "deployer/rollout.html", context, partial=partial, status=status)


@permission_required(VIEW_ROLLOUT, raise_exception=True)
def rollout_detail(request, pk):
    return _rollout_page(request, selectors.rollout_get(pk))


@permission_required([VIEW_ROLLOUT, VIEW], raise_exception=True)
def rollout_traffic(request, pk):
    """The canary charts' data (static/js/canary-charts.js): both tracks over the canary's
    window, as JSON, for a signed-in user who may see the deployment's traffic."""
    return JsonResponse(selectors.canary_traffic(selectors.rollout_get(pk), now=timezone.now()))


def _canary_decision(request, pk, decide, done: str, form: CanaryAbortForm | None = None):
    """Shared POST handling of promote-now and abort: the service judges who may and whether
    the canary can still be decided on; a refusal shows on the page with its status."""
    rollout = selectors.rollout_get(pk)
    try:
        decide(rollout)
    except PermissionDenied as exc:
        return _rollout_page(request, selectors.rollout_get(pk), status=403, error=str(exc), abort_form=form)
    except ServiceError as exc:
        shown = form is not None and add_service_error(form, exc, fields_only=True)  # under the field
        error = "" if shown else exc.message
        return _rollout_page(request, selectors.rollout_get(pk), status=exc.http_status, error=error, abort_form=form)
    messages.success(request, done.format(revision=rollout.revision))
    return _redirect(request, reverse("deployer:rollout", kwargs={"pk": pk}))


@require_POST
@permission_required(VIEW_ROLLOUT, raise_exception=True)  # who may is selectors.canary_denials, in the service
def rollout_promote(request, pk):
    return _canary_decision(
        request,
        pk,
        lambda rollout: services.canary_promote_now(rollout_id=rollout.pk, actor=request.user),
        "Revision {revision} promoted early: its remaining canary steps are skipped and it becomes the stable version.",
    )


@require_POST
@permission_required(VIEW_ROLLOUT, raise_exception=True)  # the requester or an approver, in the service
def rollout_abort(request, pk):
    form = CanaryAbortForm(request.POST)
    if not form.is_valid():
        return _rollout_page(request, selectors.rollout_get(pk), status=400, abort_form=form)
    return _canary_decision(
        request,
        pk,
        lambda rollout: services.canary_abort(
            rollout_id=rollout.pk, actor=request.user, reason=form.cleaned_data["reason"]
        ),
        "Revision {revision}'s canary aborted: all traffic goes back to the stable version and the alias stays.",
        form,
    )
