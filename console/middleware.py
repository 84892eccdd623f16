import re
import uuid
from contextvars import ContextVar

from django.contrib.auth.middleware import LoginRequiredMiddleware as _DjangoLoginRequired

_request_id: ContextVar[str] = ContextVar("request_id", default="")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")


def current_request_id() -> str:
    """The id of the HTTP request (or task) being served, for audit events and logs."""
    return _request_id.get()


def set_request_id(value: str):
    return _request_id.set(value)


class RequestIdMiddleware:
    """Takes a well-formed X-Request-ID from a proxy or makes one, and echoes it back."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = _request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            _request_id.reset(token)
        response["X-Request-ID"] = request_id
        return response


class LoginRequiredMiddleware(_DjangoLoginRequired):
    """Login everywhere, except the API: DRF authenticates its own requests
    (bearer tokens or session) and answers 401 in JSON instead of redirecting."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path_info.startswith("/api/"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


class NotFoundPageMiddleware:
    """A selector's NotFound on a page becomes the 404 page with its message ("Model 'x'
    does not exist."), so views need no try/except around every lookup. The API has its
    own JSON error handler."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        from django.shortcuts import render

        from console.errors import NotFound

        if isinstance(exception, NotFound) and not request.path_info.startswith("/api/"):
            return render(request, "404.html", {"message": exception.message}, status=404)
        return None


class RequestBodyTooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"The request body is larger than the limit of {limit} bytes (MAX_REQUEST_BODY_BYTES).")
        self.limit = limit


class _BoundedStream:
    """Reads the wrapped stream but raises RequestBodyTooLarge once more than ``limit`` bytes came
    through: a body sent without a Content-Length (chunked) is bounded as well."""

    def __init__(self, stream, limit: int):
        self._stream, self._limit, self._read = stream, limit, 0

    def _count(self, data: bytes) -> bytes:
        self._read += len(data)
        if self._read > self._limit:
            raise RequestBodyTooLarge(self._limit)
        return data

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._limit + 1 - self._read
        return self._count(self._stream.read(min(size, self._limit + 1 - self._read)))

    def readline(self, size: int = -1) -> bytes:
        room = self._limit + 1 - self._read
        return self._count(self._stream.readline(room if size is None or size < 0 else min(size, room)))

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _too_large(limit: int):
    from django.http import JsonResponse

    return JsonResponse({"error": "too_large", "detail": str(RequestBodyTooLarge(limit)), "limit": limit},
                        status=413)


class RequestBodyLimitMiddleware:
    """Refuses a body over MAX_REQUEST_BODY_BYTES with a 413 that names the limit: at once when the
    Content-Length says so, and while reading when the body comes without one."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from django.conf import settings

        limit = settings.MAX_REQUEST_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            return _too_large(limit)
        request._stream = _BoundedStream(request._stream, limit)
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, RequestBodyTooLarge):
            return _too_large(exception.limit)
        return None
