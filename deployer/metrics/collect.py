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

Tracks: during a canary release the canary's replicas (its own model server locally, pods
labelled ``modelgate.io/track: canary`` on Kubernetes) are another track. TF Serving's metrics
carry no version label, so the reader says which replica is which (``Reading.tracks``) and
each track's deltas make a point of its own (``MetricPoint.track``); the deployment's traffic
is the sum of its tracks' points (``points.tracks_summed``).
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
from django.db.models import F, OuterRef, Subquery
from django.utils import timezone

from deployer.backends import backend_for
from deployer.backends.errors import BackendError
from deployer.manifests import canary_name
from deployer.metrics import promql
from deployer.metrics.arithmetic import Interval, Snapshot, add, delta, from_samples, merge, parse, to_interval
from deployer.metrics.points import FINE, align, traffic_fields
from deployer.models import Deployment, DeploymentTarget, MetricPoint, Rollout, ScrapeState
from deployer.tfserving import METRICS_PATH

log = logging.getLogger(__name__)
# Short: one slow replica (or API server) must not hold up the beat, every 10 s, for every
# other deployment. A rollout's calls keep the backend's longer default.
TIMEOUT = 3.0
KUBE_TIMEOUT = 5.0


STABLE, CANARY = MetricPoint.STABLE, MetricPoint.CANARY


@dataclass
class Reading:
    """What one scrape found, before anything is written."""

    counters: dict[str, Snapshot] = field(default_factory=dict)  # replica -> counters it answered
    present: set[str] | None = None  # replicas that still exist (None: unknown, keep every baseline)
    # The whole deployment's replicas, every track together.
    desired: int | None = None
    ready: int | None = None
    # replica -> its track, "stable" or "canary"; a replica not named here is stable's.
    tracks: dict[str, str] = field(default_factory=dict)
    # (desired, ready) of the tracks other than stable, when the reader knows them, e.g.
    # {"canary": (1, 1)}; the stable track's are the deployment's less theirs.
    track_replicas: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)

    def track_of(self, replica: str) -> str:
        return self.tracks.get(replica, STABLE)

    def replicas_by_track(self) -> dict[str, tuple[int | None, int | None]]:
        """(desired, ready) per track: stable's, and each other track the reader counted."""
        desired, ready = self.desired, self.ready
        for other_desired, other_ready in self.track_replicas.values():
            desired = None if desired is None else max(0, desired - (other_desired or 0))
            ready = None if ready is None else max(0, ready - (other_ready or 0))
        return {STABLE: (desired, ready), **self.track_replicas}


# --- reading -----------------------------------------------------------------


def _get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 - http(s) URLs built from the target, never from users
        return response.read().decode("utf-8", errors="replace")


def read_local(deployment: Deployment) -> Reading:
    """Each model server of a local deployment on its own port: the stable one, and the
    canary's while there is one (local.LocalBackend.replicas)."""
    servers = backend_for(deployment).replicas()
    counters: dict[str, Snapshot] = {}
    ready: dict[str, int] = {}  # track -> model servers that answered
    for replica, track, port in servers:
        if port is None:
            continue
        try:
            text = _get_text(f"http://127.0.0.1:{port}{METRICS_PATH}")
        except urllib.error.HTTPError as exc:  # it answers, but not with metrics
            log.warning("%s: the %s model server answered %s for %s", deployment, track, exc.code, METRICS_PATH)
            ready[track] = ready.get(track, 0) + 1
            continue
        except OSError as exc:
            log.warning("%s: the %s model server on port %s did not answer: %s", deployment, track, port, exc)
            continue
        ready[track] = ready.get(track, 0) + 1
        try:
            counters[replica] = parse(text)
        except ValueError as exc:
            log.warning("%s: unreadable metrics from the %s model server on port %s: %s", deployment, track, port, exc)
    others = {track for _, track, _ in servers if track != STABLE}
    return Reading(
        counters=counters,
        present={replica for replica, _, _ in servers},
        desired=len(servers),
        ready=sum(ready.values()),
        track_replicas={track: (sum(1 for _, t, _ in servers if t == track), ready.get(track, 0)) for track in others},
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
    return _pods_reading(replicas, counters)


def _pods_reading(replicas: dict, counters: dict[str, Snapshot]) -> Reading:
    """A Reading from ``KubernetesApi.deployment_replicas``: its counts are the stable
    Deployment's, a canary's are counted from its pods, and the Reading's desired/ready are
    the whole deployment's (every track together)."""
    canary = [pod for pod, track in replicas["tracks"].items() if track == CANARY]
    canary_ready = sum(1 for pod in canary if pod in replicas["serving"])
    return Reading(
        counters=counters,
        present=set(replicas["pods"]),
        desired=replicas["desired"] + len(canary),
        ready=replicas["ready"] + canary_ready,
        tracks=replicas["tracks"],
        track_replicas={CANARY: (len(canary), canary_ready)} if canary else {},
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
    """Counters from Prometheus, of the stable and the canary Deployment's pods; which pods exist,
    their tracks and the replica counts from the API server (when it does not answer, no
    baseline is dropped and the counts stay unknown)."""
    reading = Reading()
    try:
        reading = _pods_reading(client.deployment_replicas(deployment.name), {})
    except BackendError as exc:
        log.warning("%s: replica counts unknown: %s", deployment, exc)
    canary = canary_name(deployment.name)
    try:
        reading.counters = prometheus_counters(
            base_url, promql.pod_counters(deployment.target.namespace, deployment.name, canary), at
        )
    except (OSError, ValueError, KeyError, IndexError) as exc:
        log.warning("%s: Prometheus at %s did not answer the query: %s", deployment, base_url, exc)
    # A pod the API server did not list (it did not answer, or the pod is gone) still has its
    # track in its name: the canary's counters must never be added to stable's, whose error
    # rate the canary is judged against.
    for pod in reading.counters:
        if pod not in reading.tracks and promql.pod_of(pod, canary):
            reading.tracks[pod] = CANARY
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
    """What one track of one deployment's reading adds to its point."""

    interval: Interval
    version: int | None
    desired: int | None
    ready: int | None


def _deltas(
    states: dict[str, ScrapeState], reading: Reading, now: datetime, deployment_id: int, out: "_Writes"
) -> dict[str, list[Snapshot]]:
    """Compare a reading with the stored baselines: the deltas it yields per track, and the
    baseline rows to create, update and delete (collected in ``out`` so one cycle writes them
    in bulk)."""
    deltas: dict[str, list[Snapshot]] = {}
    for replica, counters in reading.counters.items():
        state = states.get(replica)
        if state is None:
            out.new_states.append(
                ScrapeState(deployment_id=deployment_id, replica=replica, scraped_at=now, counters=counters)
            )
            continue
        if state.scraped_at >= now:
            continue  # a scrape that read later (or this same one, run again) already counted it
        deltas.setdefault(reading.track_of(replica), []).append(delta(state.counters, counters))
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


Versions = dict[str, int | None]  # track -> the version its replicas serve


def record_readings(
    readings: dict[int, tuple[Reading, Versions]], *, now: datetime
) -> dict[int, dict[str, MetricPoint]]:
    """Turn readings (deployment id -> (reading, version per track)) into deltas against the
    stored baselines and add each track's to its point of the interval containing ``now``.

    A fixed number of queries whatever the number of deployments and tracks (a test pins it):
    the deployments are locked, their baselines and this interval's points read, and every
    change written, each in one statement. Returns each deployment's points by track, none
    when nothing was learnt (only baselines, no replica answered while some are ready, or
    deleted meanwhile)."""
    result: dict[int, dict[str, MetricPoint]] = {pk: {} for pk in readings}
    if not readings:
        return result
    at = align(now, FINE)
    writes = _Writes()
    learnt: dict[tuple[int, str], _Delta] = {}
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
            reading, versions = readings[pk]
            deltas = _deltas(states[pk], reading, now, pk, writes)
            counts = reading.replicas_by_track()
            # No replica ready is worth a point of its own (no traffic, 0 ready): the chart
            # shows the outage instead of a gap.
            for track in sorted(deltas.keys() | {t for t, (_, ready) in counts.items() if ready == 0}):
                desired, ready = counts.get(track, (None, None))
                interval = to_interval(merge(deltas.get(track, [])))
                learnt[(pk, track)] = _Delta(interval, versions.get(track), desired, ready)
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
            for point in _points_add(learnt, at):
                result[point.deployment_id][point.track] = point
    return result


def _points_add(learnt: dict[tuple[int, str], _Delta], at: datetime) -> list[MetricPoint]:
    """Add each delta to its deployment's and track's point for ``at`` (a second scrape in the
    same 10 s), or create the point. The caller holds the deployments' locks."""
    existing = {
        (p.deployment_id, p.track): p
        for p in MetricPoint.objects.filter(deployment_id__in={pk for pk, _ in learnt}, resolution=FINE, at=at)
    }
    created, changed = [], []
    for (pk, track), d in learnt.items():
        point = existing.get((pk, track))
        if point is None:
            created.append(
                MetricPoint(
                    deployment_id=pk,
                    track=track,
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
    return MetricPoint.objects.bulk_create([*created, *changed])


def scrape_record(
    *, deployment_id: int, reading: Reading, version: int | None, now: datetime, canary_version: int | None = None
) -> MetricPoint | None:
    """One deployment's reading recorded (see ``record_readings``): the stable track's point
    (the whole deployment's unless a canary runs), or None. ``scrape_record_tracks`` gives every
    track's."""
    return scrape_record_tracks(
        deployment_id=deployment_id, reading=reading, version=version, now=now, canary_version=canary_version
    ).get(STABLE)


def scrape_record_tracks(
    *, deployment_id: int, reading: Reading, version: int | None, now: datetime, canary_version: int | None = None
) -> dict[str, MetricPoint]:
    """One deployment's reading recorded: the points written, by track (none: nothing learnt)."""
    versions = {STABLE: version, CANARY: canary_version}
    return record_readings({deployment_id: (reading, versions)}, now=now)[deployment_id]


def _serving(**filters) -> list[Deployment]:
    """The serving deployments with what reading them needs (target, environment and model
    name for the log lines, the live version number, and the running rollout's: the canary's,
    should its replicas be serving) and none of the JSON a cycle never reads: no query is left
    for the reader threads to make."""
    running = Rollout.objects.filter(deployment=OuterRef("pk"), state=Rollout.RUNNING)
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
        .annotate(
            live_version_number=F("live_rollout__version__version"),
            running_version_number=Subquery(running.values("version__version")[:1]),
        )
    )


def _read_all(deployments: list[Deployment], now: datetime | None) -> dict[int, tuple[Reading, Versions]]:
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
    versions = {
        d.pk: {STABLE: d.live_version_number, CANARY: d.running_version_number}  # type: ignore[attr-defined]
        for d in deployments
    }
    return {pk: (reading, versions[pk]) for pk, reading in pairs if reading is not None}


def scrape_deployment(deployment_id: int, now: datetime | None = None) -> MetricPoint | None:
    """Scrape one serving deployment; the stable track's point written (or added to), the
    whole deployment's unless a canary runs, or None."""
    readings = _read_all(_serving(pk=deployment_id), now)
    if not readings:
        return None
    return record_readings(readings, now=now or timezone.now())[deployment_id].get(STABLE)


def scrape_all(now: datetime | None = None) -> int:
    """Scrape every serving deployment (one that cannot be read is logged and skipped) and
    record them all at once. Returns how many points were written (one per track)."""
    readings = _read_all(_serving(), now)
    points = record_readings(readings, now=now or timezone.now())
    return sum(len(tracks) for tracks in points.values())
