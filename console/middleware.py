import io
import re
import uuid

from django.contrib.auth.middleware import LoginRequiredMiddleware as _DjangoLoginRequired

from console.request_id import reset_request_id, set_request_id

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")


class RequestIdMiddleware:
    """Takes a well-formed X-Request-ID from a proxy or makes one, and echoes it back."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = set_request_id(request_id)
        try:
            response = self.get_response(request)
        finally:
            reset_request_id(token)
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


def _too_large(limit: int):
    from django.http import JsonResponse

    detail = f"The request body is larger than the limit of {limit} bytes (MAX_REQUEST_BODY_BYTES)."
    return JsonResponse({"error": "too_large", "detail": detail, "limit": limit}, status=413)


class RequestBodyLimitMiddleware:
    """Refuses a body over MAX_REQUEST_BODY_BYTES with a 413 that names the limit: at once when the
    Content-Length says so, and otherwise after reading at most one byte more than the limit (a
    chunked body under ASGI carries no length, and Django would read all of it)."""

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
        body = request._stream.read(limit + 1)
        if len(body) > limit:
            return _too_large(limit)
        request._stream = io.BytesIO(body)
        return self.get_response(request)
