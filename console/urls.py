import sys

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template import loader
from django.urls import include, path

from console import outages
from console.audit.views import audit_list
from console.metrics import metrics_view
from console.readiness import readiness_response


def home(request):
    return redirect("registry:model-list")


@login_not_required
def healthz(request):
    """Liveness; console.outages.OutageMiddleware answers it before any session or query."""
    return JsonResponse({"status": "ok"})


@login_not_required
def readyz(request):
    """Readiness; answered by console.outages.OutageMiddleware (see console/readiness.py)."""
    return readiness_response()


urlpatterns = [
    path("", home, name="home"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("models/", include("registry.urls")),
    path("", include("registry.promotions.urls")),
    path("", include("deployer.urls")),
    path("audit/", audit_list, name="audit"),
    path("settings/", include("console.accounts.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("console.api_urls")),
]


def _wants_json(request) -> bool:
    return request.path_info.startswith("/api/")


def handler404(request, exception=None):
    if _wants_json(request):
        return JsonResponse({"error": "not_found", "detail": f"No API endpoint at {request.path}."}, status=404)
    return render(request, "404.html", {"message": "There is no page at this address."}, status=404)


def handler403(request, exception=None):
    message = str(exception) if exception and str(exception) else "You do not have permission to do this."
    if _wants_json(request):
        return JsonResponse({"error": "permission_denied", "detail": message}, status=403)
    return render(request, "403.html", {"message": message}, status=403)


def _static_page(name: str, status: int) -> HttpResponse:
    """Error pages rendered without the request: no context processor, no database query."""
    return HttpResponse(loader.get_template(name).render(), status=status)


def handler500(request):
    outage = outages.handle(request, sys.exc_info()[1])
    if outage is not None:
        return outage
    if _wants_json(request):
        return JsonResponse({"error": "server_error", "detail": "Internal error; it has been logged."}, status=500)
    return _static_page("500.html", 500)


def handler400(request, exception=None):
    if _wants_json(request):
        return JsonResponse({"error": "bad_request", "detail": "Bad request."}, status=400)
    return _static_page("400.html", 400)


def csrf_failure(request, reason=""):
    """Django's own CSRF page shows its internals; this one says what to do."""
    if _wants_json(request):
        return JsonResponse(
            {"error": "csrf_failed", "detail": "CSRF check failed. Send a bearer token, or reload the page and retry."},
            status=403,
        )
    return render(request, "403_csrf.html", status=403)
