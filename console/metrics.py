"""Modelgate's own metrics at /metrics, in Prometheus' text format, for operators.

- modelgate_http_request_duration_seconds{method,view,status}: every console and API request
  (the view's URL name, not the path, so the label set stays small).
- modelgate_celery_queue_length{queue}: messages waiting on each queue (Redis or the
  embedded filesystem broker), read at scrape time.
- modelgate_rollouts_total{kind,state} and modelgate_rollout_duration_seconds{kind,state}:
  from the rollout rows at scrape time, so they are right whichever worker ran the rollout.

Prometheus authenticates with a bearer token (an API token of a user who may view
deployments), e.g. `authorization: {credentials_file: …}` in its scrape config. With several
gunicorn workers set PROMETHEUS_MULTIPROC_DIR so request metrics of all of them are merged.
"""

import math
import os
import time
from pathlib import Path
from typing import cast

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse
from django.utils.module_loading import import_string
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from rest_framework import exceptions

from console import perms
from console.accounts.authentication import bearer_token

REQUEST_SECONDS = Histogram(
    "modelgate_http_request_duration_seconds",
    "Console and API requests.",
    ["method", "view", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class RequestMetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        view = match.view_name if match and match.view_name else "unmatched"
        REQUEST_SECONDS.labels(request.method, view, str(response.status_code)).observe(time.perf_counter() - started)
        return response


def queue_lengths() -> dict[str, int]:
    queues = [settings.CELERY_TASK_DEFAULT_QUEUE, settings.DEPLOY_QUEUE]
    broker = settings.CELERY_BROKER_URL
    lengths: dict[str, int] = {}
    if broker.startswith("redis"):
        import redis

        client = redis.Redis.from_url(broker, socket_timeout=2)
        for queue in queues:
            # redis-py types each command for its sync and asyncio clients at once; this
            # sync client's llen returns an int.
            lengths[queue] = int(cast(int, client.llen(queue)))
    elif broker.startswith("filesystem"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        for queue in queues:
            # kombu's filesystem transport names each message file <time>_<uuid>.<queue>.msg
            lengths[queue] = sum(1 for _ in folder.glob(f"*.{queue}.msg"))
    return lengths


class _QueueCollector:
    """Messages waiting on each Celery queue, read from the broker at scrape time."""

    def collect(self):
        queue = GaugeMetricFamily(
            "modelgate_celery_queue_length", "Messages waiting on a Celery queue.", labels=["queue"]
        )
        try:
            for name, length in queue_lengths().items():
                queue.add_metric([name], length)
        except Exception:  # noqa: S110 - an unreachable broker must not break the rest of the scrape
            pass
        yield queue


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REQUEST_SECONDS)
    registry.register(_QueueCollector())
    # The apps above the console add their own (the deployer's rollouts), wired by settings.
    for path in settings.OWN_METRICS_COLLECTORS:
        registry.register(import_string(path)())
    return registry


@login_not_required
def metrics_view(request):
    # The same bearer tokens, and the same count of failed ones per address, as the API.
    try:
        token = bearer_token(request)
        user = token.user if token else (request.user if request.user.is_authenticated else None)
    except exceptions.AuthenticationFailed:
        user = None
    except exceptions.Throttled as refusal:
        wait = max(1, math.ceil(refusal.wait or 1))
        response = HttpResponse(
            f"Too many failed token logins from this address. Retry in {wait} seconds.\n",
            status=429,
            content_type="text/plain",
        )
        response["Retry-After"] = str(wait)
        return response
    if user is None:
        response = HttpResponse(
            "Authenticate with 'Authorization: Bearer <API token>'.\n", status=401, content_type="text/plain"
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if not user.has_perm(perms.VIEW_DEPLOYMENT):
        return HttpResponse("This token's user may not view deployments.\n", status=403, content_type="text/plain")
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
