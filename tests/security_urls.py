"""The console's URLs plus one view that fails, to show what a server error looks like."""

from django.urls import path

from console.urls import handler400, handler403, handler404, handler500  # noqa: F401
from console.urls import urlpatterns as console_urlpatterns


def boom(request):
    raise RuntimeError("internal detail that must never reach a browser")


urlpatterns = [path("boom/", boom), *console_urlpatterns]
