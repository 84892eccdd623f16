"""Outages of what Modelgate depends on (the database, the broker, MLflow) answer 503 with
``Retry-After``, quickly, and are logged once per change of state, not once per request.

- ``dependency_of(exc)`` names the dependency an exception says is unreachable, if any.
- ``mark_down`` / ``mark_up`` keep this process's view of each dependency and write one log
  line when it changes.
- ``OutageMiddleware`` (outermost) answers ``/healthz`` and ``/readyz`` before sessions or
  the database are touched, and turns an outage anywhere below it into a JSON 503 for the
  API and a static 503 page for browsers. Neither page touches the database.
- ``QuietOutages`` keeps Django's request logger from writing a traceback per request
  during an outage.
"""

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator

from django.http import HttpRequest, HttpResponse, JsonResponse

log = logging.getLogger("modelgate.outages")

DATABASE, BROKER, MLFLOW = "database", "broker", "mlflow"
# Seconds a client should wait before retrying, per dependency.
RETRY_AFTER = {DATABASE: 5, BROKER: 10, MLFLOW: 10}
NAMES = {DATABASE: "The database", BROKER: "The task broker", MLFLOW: "MLflow"}

_lock = threading.Lock()
_down: dict[str, tuple[float, str]] = {}  # dependency -> (since, what failed)
_last_failure: dict[str, float] = {}


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def dependency_of(exc: BaseException | None) -> str | None:
    """The dependency ``exc`` (or what caused it) says is unreachable, or None."""
    from django.db import InterfaceError, OperationalError

    for e in _chain(exc):
        marked = getattr(e, "outage_dependency", None)
        if marked:
            return marked
        if isinstance(e, OperationalError | InterfaceError):
            return DATABASE
        module = type(e).__module__.split(".")[0]
        if module == "kombu" and type(e).__name__ == "OperationalError":
            return BROKER
        if module == "redis" and type(e).__name__ in ("ConnectionError", "TimeoutError", "BusyLoadingError"):
            return BROKER
    return None


def _summary(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def mark_down(dependency: str, exc: BaseException | str) -> None:
    with _lock:
        _last_failure[dependency] = time.monotonic()
        if dependency in _down:
            return
        _down[dependency] = (time.monotonic(), exc if isinstance(exc, str) else _summary(exc))
    log.warning("%s is unreachable (%s); answering 503 until it is back.", NAMES[dependency], _down[dependency][1])


def mark_up(dependency: str) -> None:
    if dependency not in _down:  # the common case: no lock, no work
        return
    with _lock:
        since = _down.pop(dependency, None)
    if since is not None:
        log.warning("%s is reachable again after %.0f s.", NAMES[dependency], time.monotonic() - since[0])


def is_down(dependency: str, *, within: float | None = None) -> bool:
    """Down, and (with ``within``) its last failure less than that many seconds ago."""
    if dependency not in _down:
        return False
    return within is None or time.monotonic() - _last_failure.get(dependency, 0) < within


def reset() -> None:
    """Forget every state (tests)."""
    with _lock:
        _down.clear()
        _last_failure.clear()


# --- answers ------------------------------------------------------------------

_PAGE: str | None = None


def _page() -> str:
    """The static 503 page: a template rendered without a request, so no context processor
    (and no database query) runs."""
    global _PAGE
    if _PAGE is None:
        from django.template.loader import get_template

        _PAGE = get_template("503.html").render()
    return _PAGE


def outage_response(request: HttpRequest, dependency: str) -> HttpResponse:
    retry = RETRY_AFTER[dependency]
    message = f"{NAMES[dependency]} is unreachable; retry in {retry} s."
    response: HttpResponse
    if request.path_info.startswith("/api/"):
        response = JsonResponse({"error": "unavailable", "detail": message, "dependency": dependency}, status=503)
    else:
        response = HttpResponse(_page(), status=503, content_type="text/html; charset=utf-8")
    response["Retry-After"] = str(retry)
    response["Cache-Control"] = "no-store"
    # The state change was logged once; no line per request. Django's own private flag
    # (django.utils.log.log_response reads it), which the stubs do not declare.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def handle(request: HttpRequest, exc: BaseException) -> HttpResponse | None:
    dependency = dependency_of(exc)
    if dependency is None:
        return None
    mark_down(dependency, exc)
    return outage_response(request, dependency)


# --- wiring -------------------------------------------------------------------


class OutageMiddleware:
    """Outermost middleware: health endpoints first, then outages below become 503s."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        from django.core.signals import got_request_exception

        self.get_response = get_response
        got_request_exception.connect(note_request_exception, dispatch_uid="modelgate-outages")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info in ("/healthz", "/healthz/"):
            return JsonResponse({"status": "ok"})  # liveness depends on nothing
        if request.path_info in ("/readyz", "/readyz/"):
            from console.readiness import readiness_response

            return readiness_response()
        response = self.get_response(request)
        dependency = getattr(request, "_outage_dependency", None)
        if dependency is not None and response.status_code >= 500:
            # An outage inside another middleware (loading the session, say): Django already
            # made its 500 (the quiet filter kept the traceback out of the log).
            return outage_response(request, dependency)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return handle(request, exception)


def note_request_exception(sender: object = None, request: HttpRequest | None = None, **kwargs: object) -> None:
    """got_request_exception: remember which dependency failed, for the middleware above."""
    exc = sys.exc_info()[1]
    dependency = dependency_of(exc)  # None without an exception
    if dependency is not None and exc is not None and request is not None:
        mark_down(dependency, exc)
        # Read back by OutageMiddleware above; HttpRequest declares no such attribute.
        request._outage_dependency = dependency  # type: ignore[attr-defined]


class QuietOutages(logging.Filter):
    """Drop Django's per-request traceback when the error is an outage: the state change
    was logged once by ``mark_down``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and dependency_of(record.exc_info[1]))
