"""The client's address, as the lockout and the API throttles see it.

X-Forwarded-For is whatever the client wrote, plus one entry per proxy on the way. Only
the entries appended by our own proxies (``TRUSTED_PROXY_COUNT`` of them, counted from
the right) can be believed; with no trusted proxy the header is ignored, so a client cannot
dodge its lockout by sending a new address with every try.
"""

import ipaddress

from django.conf import settings


def _valid(value: str) -> str | None:
    value = value.strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def client_ip(request) -> str | None:
    """The address, or None when the request has none (a test's or a unix socket's)."""
    remote = request.META.get("REMOTE_ADDR", "") or ""
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies > 0:
        forwarded = [part for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if forwarded:
            # The entry our outermost trusted proxy appended: what connected to it.
            candidate = _valid(forwarded[-min(proxies, len(forwarded))])
            if candidate:
                return candidate
    return _valid(remote)
