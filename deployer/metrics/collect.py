"""Read TF Serving's request counters from every replica of a serving deployment and record
them as 10-second MetricPoints.

Where the counters come from:

- local backend: each model server's own endpoint, http://127.0.0.1:<port>/monitoring/prometheus/metrics
  on its internal port (the stable one, and a canary's while it runs), never through the router;
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlencode

from django.conf import settings
from django.db import transaction
from django.db.models import F
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
    # replica -> "stable" or "canary": TF Serving's metrics carry no version, so which process
    # (local) or pod (Kubernetes) answered tells the tracks apart. A replica not named is stable.
    tracks: dict[str, str] = field(default_factory=dict)


# --- reading -----------------------------------------------------------------


def _get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 - http(s) URLs built from the target, never from users
        return response.read().decode("utf-8", errors="replace")


def read_local(deployment: Deployment) -> Reading:
    """Each model server of a local deployment on its own port: the stable one, and the
    canary's while there is one (local.LocalBackend.replicas)."""
    servers = backend_for(deployment).replicas()
    counters, ready = {}, 0
    for replica, track, port in servers:
        if port is None:
            continue
        try:
            text = _get_text(f"http://127.0.0.1:{port}{METRICS_PATH}")
        except urllib.error.HTTPError as exc:  # it answers, but not with metrics
            log.warning("%s: the %s model server answered %s for %s", deployment, track, exc.code, METRICS_PATH)
            ready += 1
            continue
        except OSError as exc:
            log.warning("%s: the %s model server on port %s did not answer: %s", deployment, track, port, exc)
            continue
        ready += 1
        try:
            counters[replica] = parse(text)
        except ValueError as exc:
            log.warning("%s: unreadable metrics from the %s model server on port %s: %s", deployment, track, port, exc)
    return Reading(
        counters=counters,
        present={replica for replica, _, _ in servers},
        desired=len(servers),
        ready=ready,
        tracks={replica: track for replica, track, _ in servers},
    )


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


@dataclass
class _Delta:
    """What one deployment's reading adds to its point."""

    interval: Interval
    version: int | None
    desired: int | None
    ready: int | None


def _deltas(states: dict[str, ScrapeState], reading: Reading, now: datetime, deployment_id: int, out: "_Writes"):
    """Compare a reading with the stored baselines: the deltas it yields, and the baseline rows
    to create, update and delete (collected in ``out`` so one cycle writes them in bulk)."""
    deltas = []
    for replica, counters in reading.counters.items():
        state = states.get(replica)
        if state is None:
            out.new_states.append(
                ScrapeState(deployment_id=deployment_id, replica=replica, scraped_at=now, counters=counters)
            )
            continue
        if state.scraped_at >= now:
            continue  # a scrape that read later (or this same one, run again) already counted it
        deltas.append(delta(state.counters, counters))
        state.counters, state.scraped_at = counters, now
        out.changed_states.append(state)
    if reading.present is not None:
        out.gone_states.extend(
            s.pk for r, s in states.items() if r not in reading.present and r not in reading.counters
        )
    return deltas


@dataclass
class _Writes:
    new_states: list[ScrapeState] = field(default_factory=list)
    changed_states: list[ScrapeState] = field(default_factory=list)
    gone_states: list[int] = field(default_factory=list)


def record_readings(readings: dict[int, tuple[Reading, int | None]], *, now: datetime) -> dict[int, MetricPoint | None]:
    """Turn readings (deployment id -> (reading, live version)) into deltas against the stored
    baselines and add them to the point of the interval containing ``now``.

    A fixed number of queries whatever the number of deployments (a test pins it): the
    deployments are locked, their baselines and this interval's points read, and every change
    written, each in one statement. Returns each deployment's point, or None when nothing was
    learnt (only baselines, no replica answered while some are ready, or deleted meanwhile)."""
    result: dict[int, MetricPoint | None] = dict.fromkeys(readings)
    if not readings:
        return result
    at = align(now, FINE)
    writes = _Writes()
    learnt: dict[int, _Delta] = {}
    with transaction.atomic():
        # Locked, so two overlapping scrapes cannot both take their delta from the same baseline.
        alive = list(
            Deployment.objects.select_for_update()
            .filter(pk__in=list(readings))
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        states: dict[int, dict[str, ScrapeState]] = {pk: {} for pk in alive}
        for state in ScrapeState.objects.filter(deployment_id__in=alive):
            states[state.deployment_id][state.replica] = state
        for pk in alive:
            reading, version = readings[pk]
            deltas = _deltas(states[pk], reading, now, pk, writes)
            # No replica ready is worth a point of its own (no traffic, 0 ready): the chart
            # shows the outage instead of a gap.
            if deltas or reading.ready == 0:
                learnt[pk] = _Delta(to_interval(merge(deltas)), version, reading.desired, reading.ready)
        # Changed baselines are replaced rather than updated: Django's bulk_update builds a
        # CASE expression per row and field, which costs more CPU than the whole rest of a
        # cycle; one DELETE and one INSERT cost almost nothing (nothing refers to these rows).
        replaced = [state.pk for state in writes.changed_states]
        if replaced or writes.gone_states:
            ScrapeState.objects.filter(pk__in=[*replaced, *writes.gone_states]).delete()
        for state in writes.changed_states:
            state.pk = None
        if writes.new_states or writes.changed_states:
            ScrapeState.objects.bulk_create([*writes.new_states, *writes.changed_states])
        if learnt:
            result.update(_points_add(learnt, at))
    return result


def _points_add(learnt: dict[int, _Delta], at: datetime) -> dict[int, MetricPoint]:
    """Add each delta to its deployment's point for ``at`` (a second scrape in the same 10 s),
    or create the point. The caller holds the deployments' locks."""
    existing = {
        p.deployment_id: p for p in MetricPoint.objects.filter(deployment_id__in=list(learnt), resolution=FINE, at=at)
    }
    created, changed = [], []
    for pk, d in learnt.items():
        point = existing.get(pk)
        if point is None:
            created.append(
                MetricPoint(
                    deployment_id=pk,
                    resolution=FINE,
                    at=at,
                    version=d.version,
                    replicas_desired=d.desired,
                    replicas_ready=d.ready,
                    **traffic_fields(d.interval),
                )
            )
            continue
        total = add(Interval(point.requests, point.errors, point.latency_buckets, point.latency_sum_us), d.interval)
        for name, value in traffic_fields(total).items():
            setattr(point, name, value)
        point.version = point.version if point.version == d.version else None
        point.replicas_desired, point.replicas_ready = d.desired, d.ready
        changed.append(point)
    if changed:  # replaced, as the baselines are (see record_readings)
        MetricPoint.objects.filter(pk__in=[point.pk for point in changed]).delete()
        for point in changed:
            point.pk = None
    MetricPoint.objects.bulk_create([*created, *changed])
    return {p.deployment_id: p for p in (*created, *changed)}


def scrape_record(*, deployment_id: int, reading: Reading, version: int | None, now: datetime) -> MetricPoint | None:
    """One deployment's reading recorded (see ``record_readings``)."""
    return record_readings({deployment_id: (reading, version)}, now=now)[deployment_id]


def _serving(**filters) -> list[Deployment]:
    """The serving deployments with what reading them needs (target, environment and model
    name for the log lines, the live version number) and none of the JSON a cycle never reads:
    no query is left for the reader threads to make."""
    return list(
        Deployment.objects.filter(state=Deployment.SERVING, **filters)
        .select_related("target__environment", "model")
        .only(
            "pk",
            "name",
            "state",
            "local_port",
            "model__name",
            "target__environment__name",
            *(f"target__{f.name}" for f in DeploymentTarget._meta.concrete_fields),
        )
        .annotate(live_version_number=F("live_rollout__version__version"))
    )


def _read_all(deployments: list[Deployment], now: datetime | None) -> dict[int, tuple[Reading, int | None]]:
    """Every deployment's replicas read, several at a time: the reads wait on the network,
    and one slow endpoint (up to TIMEOUT) must not delay the others by as much each."""

    def read(deployment: Deployment) -> tuple[int, Reading | None]:
        try:
            return deployment.pk, read_replicas(deployment, now)
        except Exception:  # one broken deployment must not stop the others' metrics
            log.exception("Reading the metrics of deployment %s failed", deployment.pk)
            return deployment.pk, None

    if len(deployments) <= 1:
        pairs = [read(d) for d in deployments]
    else:
        workers = min(settings.METRICS_SCRAPE_CONCURRENCY, len(deployments))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scrape") as pool:
            pairs = list(pool.map(read, deployments))
    # Annotated by _serving's query, which list[Deployment] does not say.
    versions = {d.pk: d.live_version_number for d in deployments}  # type: ignore[attr-defined]
    return {pk: (reading, versions[pk]) for pk, reading in pairs if reading is not None}


def scrape_deployment(deployment_id: int, now: datetime | None = None) -> MetricPoint | None:
    """Scrape one serving deployment; the point written (or added to), or None."""
    readings = _read_all(_serving(pk=deployment_id), now)
    if not readings:
        return None
    return record_readings(readings, now=now or timezone.now())[deployment_id]


def scrape_all(now: datetime | None = None) -> int:
    """Scrape every serving deployment (one that cannot be read is logged and skipped) and
    record them all at once. Returns how many points were written."""
    readings = _read_all(_serving(), now)
    points = record_readings(readings, now=now or timezone.now())
    return sum(point is not None for point in points.values())
