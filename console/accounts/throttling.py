"""API throttles: requests per token, and failed bearer logins per client address.

Both count in the shared cache (``CACHES["default"]``: Redis in production, a database
table in the embedded default), so every web process sees the same counts.
"""

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from console.clientip import client_ip


class _SettingsRate:
    def get_rate(self):
        # DRF reads the rates once at import; reading them per request lets a changed
        # setting (and a test's override) apply.
        return api_settings.DEFAULT_THROTTLE_RATES[self.scope]


class TokenRateThrottle(_SettingsRate, SimpleRateThrottle):
    """``API_RATE_LIMIT`` requests per token; a browser session counts per user."""

    scope = "token"

    def get_cache_key(self, request, view):
        token = request.auth
        if token is not None and hasattr(token, "pk"):
            ident = f"t{token.pk}"
        elif request.user is not None and request.user.is_authenticated:
            ident = f"u{request.user.pk}"
        else:
            return None  # refused by authentication before it gets here
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def get_ident(self, request):
        return client_ip(request) or "unknown"


class BearerFailureThrottle(_SettingsRate, SimpleRateThrottle):
    """``API_AUTH_FAILURE_RATE`` wrong, revoked or expired tokens per client address; after
    that the address gets 429 (even with a good token) until the window has moved on, so
    guessing tokens is slow."""

    scope = "bearer_failure"
    num_requests: int  # set from the rate by SimpleRateThrottle.__init__
    duration: int

    def __init__(self, request):
        super().__init__()
        self.key = self.cache_format % {"scope": self.scope, "ident": client_ip(request) or "unknown"}
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()

    def get_cache_key(self, request, view):
        return self.key

    def blocked(self) -> bool:
        return len(self.history) >= self.num_requests

    def record_failure(self) -> None:
        self.history.insert(0, self.now)
        self.cache.set(self.key, self.history, self.duration)
