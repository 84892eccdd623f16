"""API errors as the real server sends them: a `Status` object whose code, reason and message
match what kube-apiserver says, so a client's error handling is tested against the real shapes."""

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: dict | None = None,
        retry_after: bool | None = None,
    ):
        super().__init__(message)
        # The real server's flow control answers 429 with Retry-After: 1. Note that urllib3 (under the
        # Python client) silently retries a GET that gets Retry-After on a 429 or 503.
        self.retry_after = code == 429 if retry_after is None else retry_after
        self.code = code
        self.message = message
        self.reason = REASONS.get(code, "Unknown") if reason is None else reason
        self.details = details

    def status(self) -> dict:
        return status_object(self.code, self.reason, self.message, self.details)


def status_object(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if not reason:  # StatusReasonUnknown is "", omitted from the JSON (omitempty)
        del body["reason"]
    if details:
        body["details"] = details
    return body


def success(resource, name: str, uid: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": resource.group, "kind": resource.plural, "uid": uid},
    }


def not_found(resource, name: str) -> ApiError:
    return ApiError(
        404,
        f'{resource.qualified} "{name}" not found',
        details={"name": name, "group": resource.group, "kind": resource.plural},
    )


def already_exists(resource, name: str) -> ApiError:
    return ApiError(
        409,
        f'{resource.qualified} "{name}" already exists',
        reason="AlreadyExists",
        details={"name": name, "group": resource.group, "kind": resource.plural},
    )


def invalid(resource, name: str, causes: list[tuple[str, str]]) -> ApiError:
    """422 with one cause per (field, problem), worded as the API server's validation errors."""
    text = ", ".join(f"{field}: {problem}" for field, problem in causes)
    kind_group = f"{resource.kind}.{resource.group}" if resource.group else resource.kind
    return ApiError(
        422,
        f'{kind_group} "{name}" is invalid: {text}',
        details={
            "name": name,
            "group": resource.group,
            "kind": resource.kind,
            "causes": [
                {"reason": "FieldValueInvalid", "message": problem, "field": field} for field, problem in causes
            ],
        },
    )
