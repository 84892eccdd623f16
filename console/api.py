"""Shared pieces of the REST API: the error format."""

import logging

from django.core.exceptions import PermissionDenied, ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from console.errors import ServiceError

log = logging.getLogger(__name__)


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
    if isinstance(exc, ServiceError):
        exc = exc.as_api_exception()

    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)

    response = drf_exception_handler(exc, context)
    if response is None:
        log.exception("Unhandled API error", exc_info=exc)
        return Response(
            {"error": "server_error", "detail": "Internal error. It has been logged; retry or contact an operator."},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    code = getattr(exc, "default_code", "error")
    if isinstance(exc, exceptions.ValidationError):
        pairs = list(_flatten(response.data))
        fields: dict[str, list[str]] = {}
        for field, message in pairs:
            fields.setdefault(field or "non_field_errors", []).append(message)
        sentence = "; ".join(f"{f}: {m}" if f and f != "non_field_errors" else m for f, m in pairs)
        response.data = {"error": "invalid", "detail": sentence or "Invalid input.", "fields": fields}
    else:
        detail = response.data.get("detail") if isinstance(response.data, dict) else response.data
        response.data = {"error": getattr(exc, "error_code", None) or code, "detail": str(detail)}
    return response
