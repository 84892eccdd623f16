"""Shared pieces of the REST API: the error format, input validation and the paginator."""

import logging
import math

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from console import outages
from console.errors import ServiceError

log = logging.getLogger(__name__)


def valid(serializer_class, data) -> dict:
    """``data`` checked by ``serializer_class``: its validated data, or a 400 naming each bad field."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class CursorPage(CursorPagination):
    """The API's one paginator (``DEFAULT_PAGINATION_CLASS``): {next, previous, results},
    ``PAGE_SIZE`` items a page, ``?page_size=`` up to 200. A cursor keeps its place while rows
    are added, which offsets would not. The view declares its order as ``ordering``; the last
    field must be unique so the cursor never skips or repeats a row."""

    page_size_query_param = "page_size"
    max_page_size = 200

    def get_ordering(self, request, queryset, view):
        ordering = getattr(view, "ordering", None)
        if not ordering:
            raise AssertionError(f"{type(view).__name__} pages a list: give it an `ordering`.")
        return (ordering,) if isinstance(ordering, str) else tuple(ordering)


def paginated(view, queryset, serializer_class) -> Response:
    """One page of ``queryset`` in ``view.ordering``, each item shown by ``serializer_class``."""
    paginator = CursorPage()
    page: list | None = paginator.paginate_queryset(queryset, view.request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


def paginated_rows(view, values, render) -> Response:
    """``paginated`` for a ``values()`` queryset, each page's rows shown by ``render`` (a plain
    function held to the serializer's output by a test), for the lists clients poll."""
    paginator = CursorPage()
    page: list | None = paginator.paginate_queryset(values, view.request, view=view)
    return paginator.get_paginated_response(render(page))


def _flatten(detail, prefix=""):
    """{"tags": {"k": ["bad"]}} -> [("tags.k", "bad")]: each message with its field path."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            yield from _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(detail, list):
        for item in detail:
            yield from _flatten(item, prefix)
    else:
        yield prefix, str(detail)


def exception_handler(exc, context):
    """Every API error is JSON: {"error": code, "detail": sentence, "fields": {...}}.

    ``detail`` always names the field at fault, so a CI log line is enough to fix the call.
    """
    outage = outages.dependency_of(exc)
    if outage is not None and not isinstance(exc, ServiceError):
        outages.mark_down(outage, exc)
        return outages.outage_response(context["request"], outage)
    retry_after = outages.RETRY_AFTER[outage] if outage else None
    if isinstance(exc, ServiceError):
        exc = exc.as_api_exception()

    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, IntegrityError):
        # A unique rule the services did not serialize (a concurrent write won): the request
        # conflicts with the current state, it is not a server fault. Nothing was written.
        log.warning("Integrity conflict answered 409: %s", str(exc).splitlines()[0])
        exc = exceptions.APIException("This conflicts with a change made at the same moment; reload and retry.")
        exc.status_code, exc.default_code = status.HTTP_409_CONFLICT, "conflict"

    response = drf_exception_handler(exc, context)
    if response is None:
        log.exception("Unhandled API error", exc_info=exc)
        return Response(
            {"error": "server_error", "detail": "Internal error. It has been logged; retry or contact an operator."},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    code = getattr(exc, "default_code", "error")
    if isinstance(exc, exceptions.Throttled):
        # DRF has set Retry-After already; say the same in words for a CI log.
        wait = max(1, math.ceil(exc.wait or 1))
        reason = getattr(exc, "reason", None) or (
            f"Too many requests for this token (at most {settings.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']['token']})."
        )
        response["Retry-After"] = str(wait)
        response.data = {"error": "throttled", "detail": f"{reason} Retry in {wait} seconds.", "retry_after": wait}
    elif isinstance(exc, exceptions.ValidationError):
        pairs = list(_flatten(response.data))
        fields: dict[str, list[str]] = {}
        for field, message in pairs:
            fields.setdefault(field or "non_field_errors", []).append(message)
        sentence = "; ".join(f"{f}: {m}" if f and f != "non_field_errors" else m for f, m in pairs)
        response.data = {"error": "invalid", "detail": sentence or "Invalid input.", "fields": fields}
    else:
        detail = response.data.get("detail") if isinstance(response.data, dict) else response.data
        response.data = {"error": getattr(exc, "error_code", None) or code, "detail": str(detail)}
    if retry_after and response.status_code == 503:
        response["Retry-After"] = str(retry_after)
        response._has_been_logged = True  # the outage was logged once when it began
    return response
