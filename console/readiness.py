"""``/readyz``: can this process serve? Each dependency is checked at once, in parallel,
with its latency; any one down answers 503. No session, no login: it is for load balancers
and orchestrators, and says only which dependency failed and how, never where it lives."""

import time
from concurrent.futures import ThreadPoolExecutor, wait

from django.conf import settings
from django.http import JsonResponse
from django.utils.module_loading import import_string

from console import outages

_pool = ThreadPoolExecutor(max_workers=6, thread_name_prefix="readyz")


def check_database() -> None:
    from django.db import connections

    conn = connections["default"]
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        conn.close()  # this thread's own connection: never left open


def check_broker() -> None:
    from console.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=settings.READYZ_TIMEOUT)
        conn.default_channel  # noqa: B018 - opening a channel is what talks to Redis (a PING)


def check_mlflow() -> None:
    # The registry sits above the console kernel: its MLflow ping is named by the settings.
    import_string(settings.READYZ_MLFLOW_CHECK)()


CHECKS = {outages.DATABASE: check_database, outages.BROKER: check_broker, outages.MLFLOW: check_mlflow}


def _timed(check):
    start = time.monotonic()
    try:
        check()
    except Exception as exc:  # noqa: BLE001 - every failure is a "down" answer, named below
        return False, (time.monotonic() - start) * 1000, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return True, (time.monotonic() - start) * 1000, ""


_running: dict = {}  # a check still hanging from an earlier call is not started twice


def readiness() -> dict:
    futures = {}
    for name, check in CHECKS.items():
        if name not in _running or _running[name].done():
            _running[name] = _pool.submit(_timed, check)
        futures[name] = _running[name]
    wait(futures.values(), timeout=settings.READYZ_TIMEOUT)
    report = {}
    for name, future in futures.items():
        if future.done():
            ok, ms, error = future.result()
        else:
            ok, ms, error = False, settings.READYZ_TIMEOUT * 1000, f"no answer within {settings.READYZ_TIMEOUT} s"
        (outages.mark_up if ok else outages.mark_down)(name, *(() if ok else (error,)))
        report[name] = {"ok": ok, "latency_ms": round(ms, 1), **({"error": error} if error else {})}
    return report


def readiness_response() -> JsonResponse:
    report = readiness()
    ready = all(c["ok"] for c in report.values())
    response = JsonResponse(
        {"status": "ready" if ready else "unavailable", "checks": report}, status=200 if ready else 503
    )
    response["Cache-Control"] = "no-store"
    if not ready:
        response["Retry-After"] = str(max(outages.RETRY_AFTER[n] for n, c in report.items() if not c["ok"]))
        # Django's private flag (django.utils.log.log_response reads it): a failing probe is not
        # logged as an error on every poll. The stubs do not declare it.
        response._has_been_logged = True  # type: ignore[attr-defined]
    return response
