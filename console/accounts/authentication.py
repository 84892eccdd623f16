from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from console.errors import ServiceError

from .services import token_authenticate
from .throttling import BearerFailureThrottle


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer mg_…` with a token made on the API tokens page."""

    keyword = "bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0].lower() != self.keyword:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <token>'.")
        failures = BearerFailureThrottle(request)
        if failures.blocked():
            refusal = exceptions.Throttled(wait=failures.wait())
            refusal.reason = "Too many failed token logins from this address."
            raise refusal
        try:
            token = token_authenticate(header[1])
        except ServiceError as exc:
            failures.record_failure()
            raise exceptions.AuthenticationFailed(exc.message) from None
        return token.user, token

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API token from the console's API tokens page."}
