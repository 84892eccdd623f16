"""Read TF Serving's request counters from every replica of a serving deployment and record
them as 10-second MetricPoints.

Where the counters come from:

- local backend: the model server's own endpoint, http://127.0.0.1:<port>/monitoring/prometheus/metrics;
- Kubernetes: each Ready pod's endpoint through the API server's pod proxy (port 8501);
- Kubernetes with ``settings.PROMETHEUS_URL``: one instant query to Prometheus' HTTP API for
  the raw counters of the deployment's pods (``promql.pod_counters``), selected by the
  ``namespace`` and ``pod`` labels the usual kubernetes_sd relabelling gives them. Raw
  counters rather than ``increase(...[10s])`` or ``rate()*10``: the deltas stay whole numbers (0.02 requests/s
  times 10 s would round to no request at all, forever), a restart is handled exactly like a
  direct scrape's, and a [10s] range holds fewer than two samples at any usual scrape
  interval. The price: a 10 s point moves when Prometheus scraped, so at a 30 s interval two
  of three 10 s points show no traffic and the third all of it; minute points and charts
  with a step of a minute are not affected. Over a minute or more, ``increase()`` and
  ``histogram_quantile()`` agree with these figures (``promql.py``). Local deployments are
  always read directly.

A replica's first read only stores a baseline (ScrapeState); each later read adds its delta
to the point of the 10 s interval containing ``now`` (two scrapes in one interval add up).
The network is read before the transaction; inside it the deployment row is locked, so two
overlapping scrapes cannot both take their delta from the same baseline.
"""

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlencode

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from deployer.backends import backend_for
from deployer.backends.errors import BackendError
from deployer.metrics import promql
from deployer.metrics.arithmetic import Interval, Snapshot, add, delta, from_samples, merge, parse, to_interval
from deployer.metrics.points import FINE, align, traffic_fields
from deployer.models import Deployment, DeploymentTarget, MetricPoint, ScrapeState
from deployer.tfserving import METRICS_PATH

log = logging.getLogger(__name__)
# Short: one slow replica (or API server) must not hold up the beat, every 10 s, for every
# other deployment. A rollout's calls keep the backend's longer default.
TIMEOUT = 3.0
KUBE_TIMEOUT = 5.0


@dataclass
class Reading:
    """What one scrape found, before anything is written."""

    counters: dict[str, Snapshot] = field(default_factory=dict)  # replica -> counters it answered
    present: set[str] | None = None  # replicas that still exist (None: unknown, keep every baseline)
    desired: int | None = None
    ready: int | None = None


# --- reading -----------------------------------------------------------------


def _get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 - http(s) URLs built from the target, never from users
        return response.read().decode("utf-8", errors="replace")


def read_local(deployment: Deployment) -> Reading:
    replica = f"127.0.0.1:{deployment.local_port}"
    try:
        text = _get_text(f"http://{replica}{METRICS_PATH}")
    except urllib.error.HTTPError as exc:  # it answers, but not with metrics
        log.warning("%s: the model server answered %s for %s", deployment, exc.code, METRICS_PATH)
        return Reading(present={replica}, desired=1, ready=1)
    except OSError as exc:
        log.warning("%s: the model server on %s did not answer: %s", deployment, replica, exc)
        return Reading(present={replica}, desired=1, ready=0)
    try:
        return Reading(counters={replica: parse(text)}, present={replica}, desired=1, ready=1)
    except ValueError as exc:
        log.warning("%s: unreadable metrics from %s: %s", deployment, replica, exc)
        return Reading(present={replica}, desired=1, ready=1)


def read_pods(deployment: Deployment, client) -> Reading:
    """Each Ready pod through the pod proxy. One pod that fails is skipped (its baseline is
    kept, so its requests are counted at its next good read); the others still count."""
    replicas = client.deployment_replicas(deployment.name)
    counters = {}
    for pod in replicas["serving"]:
        try:
            status, body = client.proxy(pod, "GET", METRICS_PATH)
            if status != 200 or not isinstance(body, str):
                raise ValueError(f"HTTP {status}")
            counters[pod] = parse(body)
        except (BackendError, ValueError) as exc:
            log.warning("%s: metrics of pod %s unreadable: %s", deployment, pod, exc)
    return Reading(
        counters=counters, present=set(replicas["pods"]), desired=replicas["desired"], ready=replicas["ready"]
    )


def prometheus_counters(base_url: str, query: str, at: datetime | None) -> dict[str, Snapshot]:
    """Per pod, the counters an instant query returns. Raises OSError or ValueError."""
    params = {"query": query, **({"time": f"{at.timestamp():.3f}"} if at else {})}
    with urllib.request.urlopen(  # noqa: S310 - PROMETHEUS_URL, an operator setting
        f"{base_url.rstrip('/')}/api/v1/query?{urlencode(params)}", timeout=TIMEOUT
    ) as response:
        answer = json.loads(response.read())
    data = answer.get("data") or {}
    if answer.get("status") != "success" or data.get("resultType") != "vector":
        raise ValueError(f"unexpected answer: {str(answer)[:200]}")
    by_pod: dict[str, list] = {}
    for series in data["result"]:
        labels = series["metric"]
        by_pod.setdefault(labels.get(promql.POD_LABEL, ""), []).append(
            (labels.get("__name__", ""), labels, float(series["value"][1]))
        )
    return {pod: from_samples(samples) for pod, samples in by_pod.items()}


def read_prometheus(deployment: Deployment, client, base_url: str, at: datetime | None) -> Reading:
    """Counters from Prometheus; which pods exist and the replica counts from the API server
    (when it does not answer, no baseline is dropped and the counts stay unknown)."""
    reading = Reading()
    try:
        health = client.deployment_health(deployment.name)
        reading = Reading(present={p["name"] for p in health["pods"]}, desired=health["desired"], ready=health["ready"])
    except BackendError as exc:
        log.warning("%s: replica counts unknown: %s", deployment, exc)
    try:
        reading.counters = prometheus_counters(
            base_url, promql.pod_counters(deployment.target.namespace, deployment.name), at
        )
    except (OSError, ValueError, KeyError, IndexError) as exc:
        log.warning("%s: Prometheus at %s did not answer the query: %s", deployment, base_url, exc)
    return reading


def read_replicas(deployment: Deployment, at: datetime | None = None) -> Reading | None:
    """Every replica's counters; None when the deployment cannot be read at all."""
    if deployment.target.backend == DeploymentTarget.LOCAL:
        return read_local(deployment) if deployment.local_port else None
    try:
        client = backend_for(deployment).client
    except BackendError as exc:
        log.warning("%s: no Kubernetes client: %s", deployment, exc)
        return None
    client.request_timeout = KUBE_TIMEOUT
    try:
        if settings.PROMETHEUS_URL:
            return read_prometheus(deployment, client, settings.PROMETHEUS_URL, at)
        return read_pods(deployment, client)
    except BackendError as exc:
        log.warning("%s: cannot list its pods: %s", deployment, exc)
        return None
    finally:
        client.close()


# --- recording -----------------------------------------------------------------


def _point_add(
    *, deployment_id: int, at: datetime, interval: Interval, version: int | None, desired: int | None, ready: int | None
) -> MetricPoint:
    """Add to the interval's point (a second scrape in the same 10 s), or create it.
    The caller holds the deployment's lock."""
    point = MetricPoint.objects.filter(deployment_id=deployment_id, resolution=FINE, at=at).first()
    if point is None:
        return MetricPoint.objects.create(
            deployment_id=deployment_id,
            resolution=FINE,
            at=at,
            version=version,
            replicas_desired=desired,
            replicas_ready=ready,
            **traffic_fields(interval),
        )
    total = add(Interval(point.requests, point.errors, point.latency_buckets, point.latency_sum_us), interval)
    for name, value in traffic_fields(total).items():
        setattr(point, name, value)
    point.version = point.version if point.version == version else None
    point.replicas_desired, point.replicas_ready = desired, ready
    point.save()
    return point


def scrape_record(*, deployment_id: int, reading: Reading, version: int | None, now: datetime) -> MetricPoint | None:
    """Turn a reading into deltas against the stored baselines and add them to the point of
    the interval containing ``now``. Returns the point, or None when nothing was learnt
    (only baselines, or no replica answered while some are ready)."""
    deltas = []
    with transaction.atomic():
        if not list(Deployment.objects.select_for_update().filter(pk=deployment_id).values_list("pk")):
            return None  # deleted meanwhile
        states = {s.replica: s for s in ScrapeState.objects.filter(deployment_id=deployment_id)}
        for replica, counters in reading.counters.items():
            state = states.get(replica)
            if state is None:
                ScrapeState.objects.create(
                    deployment_id=deployment_id, replica=replica, scraped_at=now, counters=counters
                )
                continue
            if state.scraped_at >= now:
                continue  # a scrape that read later (or this same one, run again) already counted it
            deltas.append(delta(state.counters, counters))
            state.counters, state.scraped_at = counters, now
            state.save(update_fields=["counters", "scraped_at"])
        if reading.present is not None:
            gone = [r for r in states if r not in reading.present and r not in reading.counters]
            ScrapeState.objects.filter(deployment_id=deployment_id, replica__in=gone).delete()
        # No replica ready is worth a point of its own (no traffic, 0 ready): the chart shows
        # the outage instead of a gap.
        if not deltas and reading.ready != 0:
            return None
        return _point_add(
            deployment_id=deployment_id,
            at=align(now, FINE),
            interval=to_interval(merge(deltas)),
            version=version,
            desired=reading.desired,
            ready=reading.ready,
        )


def live_version(deployment: Deployment) -> int | None:
    rollout = deployment.live_rollout
    return rollout.version.version if rollout is not None and rollout.version is not None else None


def scrape_deployment(deployment_id: int, now: datetime | None = None) -> MetricPoint | None:
    """Scrape one serving deployment; the point written (or added to), or None."""
    deployment = (
        Deployment.objects.select_related("target", "model", "live_rollout__version")
        .filter(pk=deployment_id, state=Deployment.SERVING)
        .first()
    )
    if deployment is None:
        return None
    reading = read_replicas(deployment, now)
    if reading is None:
        return None
    return scrape_record(
        deployment_id=deployment.pk, reading=reading, version=live_version(deployment), now=now or timezone.now()
    )


def scrape_all(now: datetime | None = None) -> int:
    """Scrape every serving deployment; one that fails is logged and skipped. Returns how
    many points were written."""
    written = 0
    for deployment_id in Deployment.objects.filter(state=Deployment.SERVING).values_list("pk", flat=True):
        try:
            written += scrape_deployment(deployment_id, now) is not None
        except Exception:  # one broken deployment must not stop the others' metrics
            log.exception("Scraping the metrics of deployment %s failed", deployment_id)
    return written
