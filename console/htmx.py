"""Pages render two ways: the whole page, or one named partial for an htmx request."""

from django.shortcuts import render
from django.utils.cache import patch_vary_headers


def render_page(request, template: str, context: dict, *, partial: str | None = None, status: int = 200):
    if partial and request.htmx and not request.htmx.boosted:
        template = f"{template}#{partial}"
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    return response
