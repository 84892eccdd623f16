"""The answer to a login refused by the lockout (django-axes calls lockout_response)."""

from django.conf import settings
from django.shortcuts import render


def lockout_response(request, original_response=None, credentials=None):
    # Every refused try starts the lockout again (AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT),
    # so from this answer on it lasts the whole LOGIN_LOCKOUT_MINUTES.
    minutes = settings.LOGIN_LOCKOUT_MINUTES
    response = render(
        request,
        "accounts/locked_out.html",
        {"minutes": minutes, "failure_limit": settings.LOGIN_FAILURE_LIMIT},
        status=429,
    )
    response["Retry-After"] = str(minutes * 60)
    return response


def on_login_failed(sender, credentials, request=None, **kwargs):
    """After axes has counted the failure (it is installed before this app, so its receiver
    runs first and sets ``request.axes_locked_out``), write the audit event."""
    from console.clientip import client_ip

    from .services import login_failure_record

    if request is None:
        return
    username = (credentials or {}).get("username") or ""
    login_failure_record(
        username=username, ip_address=client_ip(request), locked_out=bool(getattr(request, "axes_locked_out", False))
    )
