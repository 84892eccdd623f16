"""Errors raised by service functions, shaped so views can show them as-is."""

from rest_framework import exceptions, status


class ServiceError(Exception):
    """A refusal a user can act on. ``field`` names the input at fault, if any."""

    http_status: int = status.HTTP_400_BAD_REQUEST
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def as_api_exception(self) -> exceptions.APIException:
        if self.http_status == 400:
            detail = {self.field: [self.message]} if self.field else [self.message]
            return exceptions.ValidationError(detail)
        exc = exceptions.APIException(self.message)
        exc.status_code = self.http_status
        exc.default_code = self.code
        return exc


class NotFound(ServiceError):
    http_status = status.HTTP_404_NOT_FOUND
    code = "not_found"


class Conflict(ServiceError):
    http_status = status.HTTP_409_CONFLICT
    code = "conflict"


class UpstreamUnavailable(ServiceError):
    """MLflow (or another outside system) could not be reached; worth a retry."""

    http_status = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "upstream_unavailable"
    outage_dependency = "mlflow"  # console.outages: the API adds Retry-After
