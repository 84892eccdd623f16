"""The registry pages. Thin: parse the form, call a service or selector, render."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from console import perms
from console.errors import ServiceError
from console.forms import add_service_error
from console.htmx import render_page
from console.transactions import on_commit_safely

from . import selectors, services
from .forms import EditForm, ModelCreateForm, VersionRegisterForm, tag_lines
from .tasks import sync_registry_task

PAGE_SIZE = 25


def _bool(value: str):
    return {"yes": True, "no": False}.get(value)


@permission_required(perms.VIEW_MODEL, raise_exception=True)
def model_list(request):
    filters = {
        "q": request.GET.get("q", "").strip()[:200],
        "tag": request.GET.get("tag", "").strip()[:300],
        "alias": request.GET.get("alias", "").strip()[:255],
    }
    servable = request.GET.get("servable", "")
    models = selectors.model_list(**filters, servable=_bool(servable))
    page = Paginator(models, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render_page(
        request,
        "registry/model_list.html",
        {
            "page": page,
            "filters": filters,
            "servable": servable,
            "query": query.urlencode(),
            "sync": selectors.sync_state(),
        },
        partial="results",
    )


@permission_required(perms.ADD_MODEL, raise_exception=True)
def model_create(request):
    form = ModelCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            model = services.model_create(actor=request.user, **form.cleaned_data)
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, f"Model {model.name} registered.")
            return redirect("registry:model-detail", name=model.name)
    return render(request, "registry/model_form.html", {"form": form}, status=400 if form.errors else 200)


@permission_required(perms.VIEW_MODEL, raise_exception=True)
def model_detail(request, name):
    model = selectors.model_get(name)
    page = Paginator(selectors.version_list(model=model).order_by("-version"), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return render_page(
        request,
        "registry/model_detail.html",
        {
            "model": model,
            "page": page,
            "edit_form": EditForm(initial={"description": model.description, "tags": tag_lines(model.tags)}),
        },
        partial="versions",
    )


def _edit(request, obj, update, redirect_url, template, context):
    """Shared POST handling of the description-and-tags form on model and version pages."""
    form = EditForm(request.POST)
    if form.is_valid():
        try:
            update(description=form.cleaned_data["description"], tags=form.tag_changes(obj.tags))
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, "Saved.")
            return redirect(redirect_url)
    return render(request, template, {**context, "edit_form": form, "editing": True}, status=400)


@require_POST
@permission_required(perms.CHANGE_MODEL, raise_exception=True)
def model_edit(request, name):
    model = selectors.model_get(name)
    page = Paginator(selectors.version_list(model=model).order_by("-version"), PAGE_SIZE).get_page(1)
    return _edit(
        request,
        model,
        lambda **kw: services.model_update(actor=request.user, model=model, **kw),
        reverse("registry:model-detail", kwargs={"name": name}),
        "registry/model_detail.html",
        {"model": model, "page": page},
    )


@permission_required(perms.ADD_VERSION, raise_exception=True)
def version_register(request, name):
    model = selectors.model_get(name)
    form = VersionRegisterForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            version = services.version_register(actor=request.user, model_name=model.name, **form.cleaned_data)
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, f"Registered {version}.")
            return redirect("registry:version-detail", name=model.name, version=version.version)
    return render(
        request, "registry/version_form.html", {"form": form, "model": model}, status=400 if form.errors else 200
    )


@permission_required(perms.VIEW_VERSION, raise_exception=True)
def version_detail(request, name, version):
    mv = selectors.version_get(name, version)
    return render(
        request,
        "registry/version_detail.html",
        {
            "version": mv,
            "model": mv.model,
            "edit_form": _version_edit_form(mv),
            "recent_requests": selectors.version_recent_requests(mv),
            "keras_conversion": settings.MODELGATE_KERAS_CONVERSION,
        },
    )


def _version_edit_form(mv):
    return EditForm(
        initial={
            "description": mv.description,
            "tags": tag_lines({k: v for k, v in mv.tags.items() if not k.startswith("modelgate.")}),
        }
    )


@permission_required(perms.VIEW_VERSION, raise_exception=True)
def version_run(request, name, version):
    """The run panel, loaded by htmx after the page so a slow MLflow never delays the page."""
    mv = selectors.version_get(name, version)
    context = {"version": mv, "model": mv.model, "run_view": selectors.version_run(mv)}
    if request.htmx:
        return render(request, "registry/version_detail.html#run", context)
    # Without JavaScript the link lands here: the whole page, run panel filled in.
    context["edit_form"] = _version_edit_form(mv)
    context["recent_requests"] = selectors.version_recent_requests(mv)
    return render(request, "registry/version_detail.html", context)


@require_POST
@permission_required(perms.CHANGE_VERSION, raise_exception=True)
def version_edit(request, name, version):
    mv = selectors.version_get(name, version)
    return _edit(
        request,
        mv,
        lambda **kw: services.version_update(actor=request.user, version=mv, **kw),
        reverse("registry:version-detail", kwargs={"name": name, "version": mv.version}),
        "registry/version_detail.html",
        {"version": mv, "model": mv.model, "recent_requests": selectors.version_recent_requests(mv)},
    )


@require_POST
@permission_required(perms.CHANGE_VERSION, raise_exception=True)
def version_convert(request, name, version):
    mv = selectors.version_get(name, version)
    try:
        services.version_convert_request(actor=request.user, version=mv)
        messages.info(
            request,
            f"Converting v{mv.version}'s Keras archive to a SavedModel; this page shows "
            "the outcome when the worker is done.",
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("registry:version-detail", name=name, version=mv.version)


@require_POST
@permission_required(perms.SYNC_REGISTRY, raise_exception=True)
def sync_now(request):
    on_commit_safely(sync_registry_task.delay, what="Sync now")
    messages.info(request, "Sync with MLflow queued; the list refreshes as the worker finishes.")
    return redirect("registry:model-list")
