"""The promotion pages. Thin: parse the form, call a service or selector, render.

Every state change goes through ``services``."""

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from console import perms
from console.errors import NotFound, ServiceError
from console.forms import add_service_error
from console.htmx import render_page
from registry import selectors as registry_selectors
from registry.models import ModelVersion

from . import selectors, services
from .forms import (
    AsOfForm,
    CancelForm,
    CommentForm,
    EnvironmentForm,
    PromotionRequestForm,
    ReviewForm,
)
from .models import Comment, Environment, PolicyChange, PromotionRequest, Review

PAGE_SIZE = 25
R = PromotionRequest


def _denied(request, exc: PermissionDenied):
    return render(request, "403.html", {"message": str(exc) or "You do not have permission to do this."}, status=403)


# --- lists ------------------------------------------------------------------


@permission_required(perms.VIEW_PROMOTION, raise_exception=True)
def inbox(request):
    return render(
        request,
        "promotions/inbox.html",
        {
            "waiting": selectors.inbox(request.user),
            "open_requests": selectors.open_request_list()[:50],
        },
    )


@permission_required(perms.VIEW_PROMOTION, raise_exception=True)
def request_list(request):
    filters = {
        "state": request.GET.get("state", "").strip()[:20],
        "environment": request.GET.get("environment", "").strip()[:50],
        "model": request.GET.get("model", "").strip()[:1000],
    }
    page = Paginator(selectors.request_list(**filters), PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render_page(
        request,
        "promotions/list.html",
        {
            "page": page,
            "filters": filters,
            "query": query.urlencode(),
            "states": R.STATES,
            "environments": selectors.environment_list(),
        },
        partial="results",
    )


# --- one request ------------------------------------------------------------


def _comment_tree(req: PromotionRequest) -> list[Comment]:
    """Top-level comments, each with ``.children`` (replies, recursively), oldest first."""
    comments = list(req.comments.all())  # prefetched by selectors.request_get(discussion=True)
    for c in comments:
        c.children = []
    by_id: dict[int | None, Comment] = {c.pk: c for c in comments}
    roots: list[Comment] = []
    for c in comments:
        parent = by_id.get(c.reply_to_id)
        (parent.children if parent else roots).append(c)
    return roots


def _review_context(request, req: PromotionRequest) -> dict:
    user = request.user
    reviews = list(req.reviews.all())  # prefetched by selectors.request_get(discussion=True)
    return {
        "req": req,
        "reviews": reviews,
        # What the page's poll reports back as ``seen``: a change of state or a new review
        # re-renders every region that shows them.
        "poll_key": f"{req.state}.{len(reviews)}",
        "approvals": sum(1 for r in reviews if r.decision == Review.APPROVE),
        "can_review": req.state == R.PENDING and selectors.is_approver(user, req.environment),
        "can_cancel": req.can_be_cancelled_by(user),
    }


def _side(version: ModelVersion | None) -> dict | None:
    if version is None:
        return None
    return {"version": version, "run_view": registry_selectors.version_run(version)}


def _detail_context(request, req: PromotionRequest, **forms) -> dict:
    span = selectors.live_span(environment=req.environment, model=req.model)
    live = selectors.live_version(span) if span is not None else None
    return {
        **_review_context(request, req),
        "candidate": _side(req.version),
        "live_span": span,
        "live": _side(live),
        "comments": _comment_tree(req),
        "approve_form": forms.get("approve_form") or ReviewForm(prefix="approve"),
        "reject_form": forms.get("reject_form") or ReviewForm(prefix="reject"),
        "cancel_form": forms.get("cancel_form") or CancelForm(),
        "comment_form": forms.get("comment_form") or CommentForm(),
        "review_error": forms.get("review_error", ""),
    }


@permission_required(perms.VIEW_PROMOTION, raise_exception=True)
def request_detail(request, pk):
    req = selectors.request_get(pk, discussion=True)
    if request.htmx and "seen" in request.GET:
        return _request_poll(request, req, seen=request.GET["seen"])
    return render(request, "promotions/detail.html", _detail_context(request, req))


def _request_poll(request, req: PromotionRequest, *, seen: str):
    """The deployment panel the request page polls while the request moves; when its state
    changed since the page rendered ``seen``, also the header, gates, decision and live
    comparison, swapped out of band, so no part of the page contradicts another."""
    context = _review_context(request, req)
    changed = context["poll_key"] != seen
    if changed:
        context = {**_detail_context(request, req), "poll_oob": True}
    return render_page(request, "promotions/detail.html", {**context, "changed": changed}, partial="poll")


def _review(request, pk, decide, form_name: str):
    """Shared POST handling of approve and reject: the review partial for htmx, else redirect."""
    req = selectors.request_get(pk)
    form = ReviewForm(request.POST, prefix=form_name.removesuffix("_form"))
    form.is_valid()  # the comment is optional here; the service says when it is required
    status, error = 200, ""
    try:
        req = decide(req, form.cleaned_data.get("comment", ""))
    except PermissionDenied as exc:
        if not request.htmx:
            return _denied(request, exc)
        status, error = 403, str(exc)
    except ServiceError as exc:
        status, error = exc.http_status, exc.message
        if add_service_error(form, exc, fields_only=True):  # shown under the field instead of in the banner
            error = ""
    if status == 200 and not request.htmx:
        messages.success(request, f"Request #{req.pk}: {req.get_state_display().lower()}.")
        return redirect("promotions:detail", pk=req.pk)
    req = selectors.request_get(req.pk, discussion=True)
    if request.htmx:
        context = {
            **_review_context(request, req),
            "review_error": error,
            "oob": status == 200,
            "approve_form": ReviewForm(prefix="approve"),
            "reject_form": ReviewForm(prefix="reject"),
            form_name: form if status != 200 else ReviewForm(prefix=form.prefix),
            "cancel_form": CancelForm(),
        }
        return render_page(request, "promotions/detail.html", context, partial="review", status=status)
    return render(
        request,
        "promotions/detail.html",
        _detail_context(request, req, review_error=error, **{form_name: form}),
        status=status,
    )


@require_POST
@permission_required(perms.VIEW_PROMOTION, raise_exception=True)  # the service: is_approver
def request_approve(request, pk):
    return _review(
        request,
        pk,
        lambda req, comment: services.promotion_approve(actor=request.user, request_id=req.pk, comment=comment),
        "approve_form",
    )


@require_POST
@permission_required(perms.VIEW_PROMOTION, raise_exception=True)  # the service: is_approver
def request_reject(request, pk):
    return _review(
        request,
        pk,
        lambda req, comment: services.promotion_reject(actor=request.user, request_id=req.pk, comment=comment),
        "reject_form",
    )


@require_POST
@permission_required(perms.VIEW_PROMOTION, raise_exception=True)
def request_cancel(request, pk):
    # Who may cancel is PromotionRequest.may_cancel, which the service checks under its lock.
    req = selectors.request_get(pk)
    form = CancelForm(request.POST)
    form.is_valid()
    try:
        services.promotion_cancel(actor=request.user, request_id=req.pk, reason=form.cleaned_data.get("reason", ""))
    except PermissionDenied as exc:
        return _denied(request, exc)
    except ServiceError as exc:
        add_service_error(form, exc)
        return render(
            request,
            "promotions/detail.html",
            _detail_context(request, selectors.request_get(pk, discussion=True), cancel_form=form),
            status=exc.http_status,
        )
    messages.success(request, f"Request #{req.pk} cancelled.")
    if request.htmx:
        response = redirect("promotions:detail", pk=req.pk)
        response["HX-Redirect"] = response["Location"]
        return response
    return redirect("promotions:detail", pk=req.pk)


@require_POST
@permission_required(perms.COMMENT_PROMOTION, raise_exception=True)
def request_comment(request, pk):
    req = selectors.request_get(pk)
    form = CommentForm(request.POST)
    if form.is_valid():
        try:
            comment = services.promotion_comment(
                actor=request.user,
                request_id=req.pk,
                body=form.cleaned_data["body"],
                reply_to=form.cleaned_data["reply_to"],
            )
        except PermissionDenied as exc:
            return _denied(request, exc)
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            return redirect(reverse("promotions:detail", kwargs={"pk": req.pk}) + f"#comment-{comment.pk}")
    req = selectors.request_get(pk, discussion=True)
    return render(request, "promotions/detail.html", _detail_context(request, req, comment_form=form), status=400)


@permission_required(perms.REQUEST_PROMOTION, raise_exception=True)
def request_create(request, name, version):
    mv = registry_selectors.version_get(name, version)
    initial = {}
    env_name = request.GET.get("environment")
    if env_name:
        try:
            initial["environment"] = selectors.environment_get(env_name)
        except NotFound:
            pass  # a stale link: the form opens with no environment chosen
    form = PromotionRequestForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            req = services.promotion_request(actor=request.user, version=mv, **form.cleaned_data)
        except PermissionDenied as exc:
            return _denied(request, exc)
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            if req.state == R.BLOCKED:
                messages.warning(request, f"Request #{req.pk} is blocked by a gate; see below.")
            else:
                messages.success(request, f"Request #{req.pk} created: {req.get_state_display().lower()}.")
            return redirect("promotions:detail", pk=req.pk)
    return render(
        request,
        "promotions/request_form.html",
        {
            "form": form,
            "version": mv,
            "model": mv.model,
            "has_environments": selectors.environments_exist(),
        },
        status=400 if form.errors else 200,
    )


# --- environments -------------------------------------------------------------


@permission_required(perms.VIEW_ENVIRONMENT, raise_exception=True)
def environment_list(request):
    return render(request, "promotions/environments.html", {"environments": selectors.environment_list_with_live()})


@permission_required(perms.VIEW_ENVIRONMENT, raise_exception=True)
def environment_detail(request, name):
    env = selectors.environment_get(name)
    spans = selectors.span_list(environment=env)[:200]
    model_names = selectors.span_model_names(env)
    as_of = AsOfForm(
        request.GET if "at" in request.GET else None, initial={"model": model_names[0] if model_names else ""}
    )
    answer = None
    status = 200
    if as_of.is_bound:
        if as_of.is_valid():
            answer = _as_of_answer(env, as_of)
            if answer is None:
                status = 400
        else:
            status = 400
    changes = list(selectors.policy_change_list(env)[:10])
    return render(
        request,
        "promotions/environment.html",
        {
            "env": env,
            "spans": spans,
            "model_names": model_names,
            "as_of": as_of,
            "answer": answer,
            "requests": selectors.request_list(environment=env.name)[:PAGE_SIZE],
            "pending_change": next((c for c in changes if c.state == PolicyChange.PENDING), None),
            "policy_changes": changes,
        },
        status=status,
    )


def _as_of_answer(env: Environment, form: AsOfForm) -> dict | None:
    try:
        model = registry_selectors.model_get(form.cleaned_data["model"])
    except NotFound as exc:
        form.add_error("model", exc.message)
        return None
    at = form.cleaned_data["at"]
    span = selectors.live_span(environment=env, model=model, at=at)
    return {"model": model, "at": at, "span": span}


def _environment_form_page(request, form: EnvironmentForm, env: Environment | None):
    if request.method == "POST" and form.is_valid():
        try:
            saved = services.environment_save(
                actor=request.user,
                environment=form.save(commit=False),
                metric_thresholds=form.cleaned_data["thresholds"],
                new_webhook_secret=form.cleaned_data["new_webhook_secret"],
                clear_webhook_secret=form.cleaned_data["clear_webhook_secret"],
                reason=form.cleaned_data["policy_reason"],
            )
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            if saved.policy_change is not None:
                messages.warning(
                    request,
                    f"Policy change #{saved.policy_change.pk} proposed: {saved.environment.name} "
                    "is protected, so it applies once another admin confirms it.",
                )
            else:
                messages.success(request, f"Environment {saved.environment.name} saved.")
            return redirect("promotions:environment", name=saved.environment.name)
    return render(
        request,
        "promotions/environment_form.html",
        {
            "form": form,
            "env": env,
            "secret_set": bool(env and env.webhook_secret),
        },
        status=400 if form.errors else 200,
    )


@permission_required(perms.ADD_ENVIRONMENT, raise_exception=True)
def environment_create(request):
    return _environment_form_page(request, EnvironmentForm(request.POST or None), None)


@permission_required(perms.CHANGE_ENVIRONMENT, raise_exception=True)
def environment_edit(request, name):
    env = selectors.environment_get(name)
    form = EnvironmentForm(request.POST or None, instance=env)
    # The form writes into ``env`` while validating; keep the saved name for the page.
    return _environment_form_page(request, form, selectors.environment_get(name))


def _policy_change_action(request, name, pk, verb, done: str):
    env = selectors.environment_get(name)
    try:
        change = verb(actor=request.user, change_id=pk, environment=env)
    except PermissionDenied as exc:
        return _denied(request, exc)
    except ServiceError as exc:
        messages.error(request, exc.message)
        response = redirect("promotions:environment", name=env.name)
        response.status_code = 303
        return response
    messages.success(request, f"Policy change #{change.pk} {done}.")
    return redirect("promotions:environment", name=env.name)


@require_POST
@permission_required(perms.CHANGE_ENVIRONMENT, raise_exception=True)
def policy_change_confirm(request, name, pk):
    """A second admin confirms a pending policy change: it applies now."""
    return _policy_change_action(request, name, pk, services.policy_change_confirm, "confirmed and applied")


@require_POST
@permission_required(perms.CHANGE_ENVIRONMENT, raise_exception=True)
def policy_change_withdraw(request, name, pk):
    return _policy_change_action(request, name, pk, services.policy_change_withdraw, "withdrawn")


@permission_required(perms.VIEW_WEBHOOK_DELIVERY, raise_exception=True)
def delivery_list(request, name):
    env = selectors.environment_get(name)
    return render(
        request,
        "promotions/deliveries.html",
        {
            "env": env,
            "deliveries": selectors.delivery_list(env)[:50],
        },
    )


# --- aliases --------------------------------------------------------------------


@permission_required(perms.VIEW_MODEL, raise_exception=True)
def drift(request, name):
    """The alias-drift box on the model page, loaded by htmx after the page."""
    model = registry_selectors.model_get(name)
    return render(request, "promotions/_drift.html", {"model": model, "drifts": selectors.alias_drift(model)})


@require_POST
@permission_required(perms.CHANGE_ENVIRONMENT, raise_exception=True)
def alias_restore(request, name, environment):
    model = registry_selectors.model_get(name)
    env = selectors.environment_get(environment)
    try:
        restored = services.alias_restore(actor=request.user, model=model, environment=env)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        where = f"v{restored}" if restored is not None else "nothing (removed)"
        messages.success(request, f"Alias '{env.alias}' restored to {where}.")
    return redirect("registry:model-detail", name=model.name)
