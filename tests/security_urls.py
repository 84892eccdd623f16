"""The console's URLs plus one view that fails, to show what a server error looks like."""

from django.urls import path

from console.urls import handler400, handler403, handler404, handler500, urlpatterns as console_urlpatterns  # noqa: F401


def boom(request):
    raise RuntimeError("internal detail that must never reach a browser")


urlpatterns = [path("boom/", boom), *console_urlpatterns]
