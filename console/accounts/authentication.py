from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from console.errors import ServiceError

from .models import ApiToken
from .services import token_authenticate
from .throttling import BearerFailureThrottle


def bearer_token(request) -> ApiToken | None:
    """The API token of ``Authorization: Bearer mg_…``, or None when the request sends no
    bearer header. The one place the header is read, for the API and for /metrics.

    Raises AuthenticationFailed for a malformed header or a bad token, and Throttled while
    the client address is over its count of failed token logins (console/accounts/throttling.py).
    """
    header = authentication.get_authorization_header(request).decode("latin-1").split()
    if not header or header[0].lower() != "bearer":
        return None
    if len(header) != 2:
        raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <token>'.")
    failures = BearerFailureThrottle(request)
    if failures.blocked():
        refusal = exceptions.Throttled(wait=failures.wait())
        refusal.reason = "Too many failed token logins from this address."  # type: ignore[attr-defined]  # read by console.api.exception_handler
        raise refusal
    try:
        return token_authenticate(header[1])
    except ServiceError as exc:
        failures.record_failure()
        raise exceptions.AuthenticationFailed(exc.message) from None


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer mg_…` with a token made on the API tokens page."""

    def authenticate(self, request):
        token = bearer_token(request)
        return None if token is None else (token.user, token)

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API token from the console's API tokens page."}
