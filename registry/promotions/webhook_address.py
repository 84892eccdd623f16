"""Where a webhook may be sent: the address rules, checked when the URL is saved and again,
after resolving the host, each time a delivery is sent.

Without them an admin could point a webhook at ``http://169.254.169.254/…`` (a cloud metadata
service), ``http://[::1]:6379`` or any internal port, and read what answered in the delivery
log. So: only ``https://`` (``http://`` when ``WEBHOOK_ALLOW_HTTP`` is on), no credentials in
the URL, and the host must resolve only to public addresses: loopback, link-local (metadata
included), private, shared, unspecified, multicast and reserved ones are refused unless
``WEBHOOK_ALLOWED_NETWORKS`` (a list of CIDRs) names them. The sender connects to the very
address it checked (no second lookup a DNS rebinding could answer differently) and never
follows redirects.
"""

import hashlib
import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

from console.errors import ServiceError

FIELD = "webhook_url"


class WebhookAddressError(ServiceError):
    def __init__(self, message: str):
        super().__init__(message, field=FIELD)


def webhook_host(url: str) -> str:
    """What viewers may see of a webhook URL: its host (the path can carry a credential)."""
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def webhook_label(url: str) -> str:
    """The host plus a short fingerprint of the whole URL, for the audit trail: a change of the
    path shows as a change without the path itself being written anywhere."""
    if not url:
        return ""
    return f"{webhook_host(url)} #{hashlib.sha256(url.encode()).hexdigest()[:8]}"


def _allowed_networks() -> list:
    return [ipaddress.ip_network(n, strict=False) for n in settings.WEBHOOK_ALLOWED_NETWORKS]


def address_refusal(ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """Why this address may not receive webhooks, or "" if it may."""
    ip = ipaddress.ip_address(ip)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if any(ip in net for net in _allowed_networks()):
        return ""
    for kind in ("loopback", "link_local", "unspecified", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{kind}"):
            return f"{ip} is a {kind.replace('_', '-')} address"
    if not ip.is_global:  # shared (100.64/10), documentation, benchmarking, …
        return f"{ip} is not a public address"
    return ""


def check_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL webhooks may use, or WebhookAddressError. No DNS."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookAddressError("Webhook URL is not a valid URL.") from None
    schemes = ("https", "http") if settings.WEBHOOK_ALLOW_HTTP else ("https",)
    if parts.scheme not in schemes:
        raise WebhookAddressError(
            f"Webhook URL must start with {' or '.join(s + '://' for s in schemes)} "
            f"(got {parts.scheme or 'no scheme'!r})."
        )
    if parts.username or parts.password:
        raise WebhookAddressError("Webhook URL may not carry a user name or password; use the webhook secret.")
    host = parts.hostname
    if not host:
        raise WebhookAddressError("Webhook URL has no host.")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and (why := address_refusal(literal)):
        raise WebhookAddressError(f"Webhook URL points at {why}; set WEBHOOK_ALLOWED_NETWORKS to allow it.")
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)


def resolve(host: str, port: int) -> str:
    """The one address to connect to: every address the host resolves to must be allowed (a
    name that answers with one public and one internal address is refused)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise WebhookAddressError(f"Webhook host {host} could not be resolved: {exc}") from None
    # An internet socket address starts with its host as a string (typeshed also allows the
    # integer of other families, which SOCK_STREAM lookups of a host name do not return).
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        if why := address_refusal(address.split("%", 1)[0]):
            raise WebhookAddressError(
                f"Webhook host {host} resolves to {why}; set WEBHOOK_ALLOWED_NETWORKS to allow it."
            )
    if not addresses:
        raise WebhookAddressError(f"Webhook host {host} has no address.")
    return addresses[0]


def validate_webhook_url(url: str) -> str:
    """Checked when an environment is saved: the scheme, and the addresses the host has now (a
    host that does not resolve yet is let through; it is checked again at every send)."""
    if not url:
        return ""
    _, host, port = check_url(url)
    try:
        resolve(host, port)
    except WebhookAddressError as exc:
        if "could not be resolved" not in exc.message:
            raise
    return url
