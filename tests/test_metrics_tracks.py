"""Per-track metrics during a canary release (issue 17): TF Serving's metrics carry no version
label, so the reader says which replica is the canary's, and each track gets points of its own.
Whatever reads a deployment's traffic (charts, dashboard, API, before/after) still sees the
whole deployment, the tracks summed with percentiles from the summed buckets; the canary
analysis and the rollout page read one track at a time."""

from datetime import timedelta

import pytest
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from deployer.metrics import collect
from deployer.metrics.arithmetic import Interval, add, parse
from deployer.metrics.collect import Reading, scrape_all, scrape_record_tracks
from deployer.metrics.compare import before_after
from deployer.metrics.points import COARSE, FINE, align
from deployer.metrics.retention import downsample_and_expire
from deployer.metrics.series import series, summary, track_window, tracks_series
from deployer.models import MetricPoint, Rollout
from registry.models import ModelVersion
from tests.test_metrics_retention import fine_point, serving_deployments
from tfserving_dev.metrics import ServingMetrics

pytestmark = pytest.mark.django_db

# Recent (the API reads the last minutes of the real clock) and on a minute boundary.
T0 = align(timezone.now(), COARSE) - timedelta(minutes=10)


def at(seconds: int):
    return T0 + timedelta(seconds=seconds)


def serve(server: ServingMetrics, *, ok: int = 0, bad: int = 0, micros: float = 800.0) -> None:
    """Requests answered by one model server, recorded as TF Serving records them."""
    for status, n in (("OK", ok), ("INVALID_ARGUMENT", bad)):
        for _ in range(n):
            server.record(model_name="iris", api="predict", status=status, micros=micros)


def read(servers: dict[str, ServingMetrics], **reading) -> Reading:
    """A scrape of these model servers: each one's exposition, parsed as the scraper does."""
    return Reading(counters={name: parse(s.exposition()) for name, s in servers.items()}, **reading)


def point(deployment, at, track, **fields) -> MetricPoint:
    made = fine_point(deployment, at, **fields)
    made.track = track
    return made


@pytest.fixture
def traffic():
    """Two stable replicas and a canary replica, each with the traffic of one interval after
    a baseline: the stable ones fast and healthy, the canary slow and failing a third."""
    servers = {"stable-a": ServingMetrics(), "stable-b": ServingMetrics(), "canary-a": ServingMetrics()}
    serve(servers["stable-a"], ok=5)  # before the baseline: never counted
    baseline = {name: parse(s.exposition()) for name, s in servers.items()}
    serve(servers["stable-a"], ok=30, micros=800)
    serve(servers["stable-b"], ok=18, bad=2, micros=1500)
    serve(servers["canary-a"], ok=10, bad=5, micros=50000)
    return baseline, servers


def record_twice(deployment, baseline, servers, **reading):
    scrape_record_tracks(
        deployment_id=deployment.pk,
        reading=Reading(counters=baseline, **reading),
        version=1,
        canary_version=2,
        now=at(0),
    )
    return scrape_record_tracks(
        deployment_id=deployment.pk, reading=read(servers, **reading), version=1, canary_version=2, now=at(10)
    )


# --- collection -------------------------------------------------------------------------


def test_a_canary_and_stable_replicas_give_a_point_per_track_that_sum_to_the_whole_deployment(staging, traffic):
    tracked, whole = serving_deployments(staging, 2, version=2)
    baseline, servers = traffic
    counts = {"desired": 3, "ready": 3}

    points = record_twice(
        tracked, baseline, servers, tracks={"canary-a": "canary"}, track_replicas={"canary": (1, 1)}, **counts
    )
    # The same replicas read as one deployment without tracks (as before canaries existed).
    [alone] = record_twice(whole, baseline, servers, **counts).values()

    stable, canary = points["stable"], points["canary"]
    assert (stable.requests, stable.errors, stable.version) == (50, 2, 1)
    assert (canary.requests, canary.errors, canary.version) == (15, 5, 2)
    assert (stable.replicas_desired, stable.replicas_ready, canary.replicas_desired, canary.replicas_ready) == (
        2,
        2,
        1,
        1,
    )
    assert stable.p95_ms < 2 < 37 < canary.p95_ms  # 0.8-1.5 ms against 50 ms
    assert (alone.requests, alone.errors) == (stable.requests + canary.requests, stable.errors + canary.errors)
    assert (
        alone.latency_buckets
        == add(*(Interval(p.requests, p.errors, p.latency_buckets, p.latency_sum_us) for p in (stable, canary))).buckets
    )
    assert MetricPoint.objects.filter(deployment=tracked).count() == 2

    # Every reader of the deployment sees the same traffic, tracked or not.
    tracked_series, whole_series = series(tracked, 60, now=at(25)), series(whole, 60, now=at(25))
    assert tracked_series["totals"] == whole_series["totals"]
    for name in ("rps", "error_rate", "p50_ms", "p95_ms", "p99_ms", "replicas_ready"):
        assert tracked_series["points"][name] == whole_series["points"][name], name
    # p95 of the summed buckets: rank 55.1 of the 58 successful requests is 7.1 into the
    # canary's (37481.3, 67466.4] µs bucket holding 10. The mean of the tracks' p95s says 34.
    assert tracked_series["totals"]["p95_ms"] == pytest.approx(37.4813 + 29.9851 * 0.71, abs=0.001)
    index = tracked_series["points"]["t"].index(int(at(10).timestamp()))
    assert tracked_series["points"]["version"][index] is None  # two versions served in it
    rows = summary([tracked, whole], now=at(25))
    assert rows[tracked.pk]["rps"] == 6.5 and rows[tracked.pk]["p95_ms"] == tracked_series["totals"]["p95_ms"]
    assert {**rows[tracked.pk], "version": None} == {**rows[whole.pk], "version": None}
    assert (rows[tracked.pk]["replicas_ready"], rows[tracked.pk]["replicas_desired"]) == (3, 3)

    # One track asked for: only its points.
    canary_totals = series(tracked, 60, now=at(25), track="canary")["totals"]
    assert (canary_totals["requests"], canary_totals["errors"]) == (15, 5)
    assert canary_totals["p95_ms"] == pytest.approx(canary.p95_ms, abs=0.001)
    assert series(tracked, 60, now=at(25), track="stable")["totals"]["requests"] == 50


def test_without_per_track_counts_the_replicas_are_the_stable_tracks_and_a_canary_with_none_ready_shows(
    staging, traffic
):
    counted_whole, canary_down = serving_deployments(staging, 2)
    baseline, servers = traffic

    points = record_twice(counted_whole, baseline, servers, tracks={"canary-a": "canary"}, desired=3, ready=3)
    assert (points["stable"].replicas_desired, points["stable"].replicas_ready) == (3, 3)
    assert (points["canary"].replicas_desired, points["canary"].replicas_ready) == (None, None)
    assert summary([counted_whole], now=at(25))[counted_whole.pk]["replicas_ready"] == 3

    # The canary's server does not answer and none of its replicas is ready: a point that
    # says so (as a deployment with no replica ready gets), not a gap.
    stable_only = {name: s for name, s in servers.items() if name.startswith("stable")}
    points = record_twice(
        canary_down,
        baseline,
        stable_only,
        tracks={"canary-a": "canary"},
        track_replicas={"canary": (1, 0)},
        desired=3,
        ready=2,
    )
    assert (points["canary"].requests, points["canary"].replicas_ready, points["canary"].p95_ms) == (0, 0, None)
    assert (points["stable"].requests, points["stable"].replicas_ready) == (50, 2)


def test_the_canarys_points_carry_the_running_rollouts_version_and_the_stable_ones_the_live_version(
    staging, monkeypatch
):
    [deployment] = serving_deployments(staging)
    v2 = ModelVersion.objects.create(
        model=deployment.model, version=2, source="models:/x/2", created_at=T0, updated_at=T0
    )
    Rollout.objects.create(deployment=deployment, revision=2, version=v2, state=Rollout.RUNNING)
    servers = {"pod-stable": ServingMetrics(), "pod-canary": ServingMetrics()}
    monkeypatch.setattr(
        collect, "read_replicas", lambda d, when=None: read(servers, tracks={"pod-canary": "canary"}, ready=2)
    )

    scrape_all(now=at(0))
    serve(servers["pod-stable"], ok=9)
    serve(servers["pod-canary"], ok=1)

    assert scrape_all(now=at(10)) == 2  # points written: one per track
    assert set(MetricPoint.objects.values_list("track", "version", "requests")) == {("stable", 1, 9), ("canary", 2, 1)}


def test_the_dashboard_sparkline_counts_both_tracks_requests_over_each_interval_once(staging):
    [deployment] = serving_deployments(staging)
    MetricPoint.objects.bulk_create(
        point(deployment, at(s), track, requests=10 if track == "stable" else 2)
        for s in range(0, 60, 10)
        for track in ("stable", "canary")
    )

    row = summary([deployment], now=at(65))[deployment.pk]

    # 72 requests in the minute's six 10 s intervals (twelve points).
    assert row["sparkline"][-1] == 1.2 and row["rps"] == 1.2


# --- reading one track ----------------------------------------------------------------------


def test_track_window_counts_one_tracks_points_that_start_in_the_window(staging):
    [deployment] = serving_deployments(staging)
    MetricPoint.objects.bulk_create(
        [
            point(deployment, at(0), "canary", requests=99, errors=99),  # before the window
            point(deployment, at(10), "canary", requests=20, errors=2, buckets={"1000": 20}),
            point(deployment, at(20), "canary", requests=20, errors=0, buckets={"1000": 0, "2000": 20}),
            point(deployment, at(30), "canary", requests=99, errors=99),  # at the window's end: outside
            *(point(deployment, at(s), "stable", requests=100, errors=1) for s in range(0, 40, 10)),
        ]
    )

    canary = track_window(deployment.pk, "canary", at(5), at(30), now=at(35))
    stable = track_window(deployment.pk, "stable", at(5), at(30), now=at(35))

    assert (canary.requests, canary.errors) == (40, 2)
    # rank 38 of 40 is 18 into (1000, 2000] µs holding 20; the two points' own p95s average 1.45 ms.
    assert canary.p95_ms == pytest.approx(1.9)
    assert (stable.requests, stable.errors) == (200, 2)
    empty = track_window(deployment.pk, "canary", at(40), at(60), now=at(65))
    assert (empty.requests, empty.errors, empty.p95_ms) == (0, 0, None)
    with pytest.raises(ValueError, match="track"):
        track_window(deployment.pk, "Canary", at(5), at(30), now=at(35))


def test_a_track_window_older_than_the_10_s_points_is_counted_in_minutes(staging):
    [deployment] = serving_deployments(staging)
    MetricPoint.objects.bulk_create(
        point(deployment, at(10 * i), track, requests=6 if track == "canary" else 60)
        for i in range(18)
        for track in ("stable", "canary")
    )
    downsample_and_expire(now=at(300))
    MetricPoint.objects.filter(resolution=FINE).delete()  # expired, as 6 hours later

    later = at(7 * 3600)
    window = track_window(deployment.pk, "canary", at(0), at(180), now=later)

    assert (window.requests, window.errors) == (3 * 36, 0)


def test_tracks_series_overlays_the_canary_on_the_stable_track_step_by_step(staging):
    [deployment] = serving_deployments(staging)
    MetricPoint.objects.bulk_create(
        [
            *(point(deployment, at(s), "stable", requests=100, errors=1) for s in range(0, 60, 10)),
            point(deployment, at(30), "canary", requests=10, errors=5, buckets={"50000": 10}),
            point(deployment, at(40), "canary", requests=30, errors=0, buckets={"50000": 30}),
        ]
    )

    data = tracks_series(deployment.pk, at(0), at(60), now=at(65))

    assert (data["step"], data["resolution"]) == (10, 10)
    assert data["t"] == [int(at(s).timestamp()) for s in range(0, 60, 10)]
    stable, canary = data["tracks"]["stable"], data["tracks"]["canary"]
    assert stable["rps"] == [10.0] * 6 and stable["error_rate"] == [0.01] * 6
    assert canary["rps"] == [None, None, None, 1.0, 3.0, None]  # before it started: nothing measured
    assert canary["error_rate"][3:5] == [0.5, 0.0]
    assert canary["p95_ms"][4] == pytest.approx(47.5) and stable["p95_ms"][0] == pytest.approx(0.95)
    assert data["totals"]["canary"]["requests"] == 40 and data["totals"]["stable"]["requests"] == 600
    by_minute = tracks_series(deployment.pk, at(0), at(60), step_seconds=60, now=at(65))
    assert by_minute["tracks"]["canary"]["rps"] == [pytest.approx(40 / 20)]  # over the 20 s its points cover


# --- retention and before/after -------------------------------------------------------------


def test_each_track_folds_into_its_own_minutes_whose_sum_is_the_deployments(staging):
    [deployment] = serving_deployments(staging)
    MetricPoint.objects.bulk_create(
        [
            *(point(deployment, at(s), "stable", requests=10, buckets={"1000": 10}) for s in range(0, 60, 10)),
            point(deployment, at(20), "canary", requests=4, errors=1, buckets={"2000": 3}, ready=1, version=2),
            point(deployment, at(30), "canary", requests=6, errors=0, buckets={"4000": 6}, ready=2, version=2),
        ]
    )
    before = series(deployment, 3600, step_seconds=60, now=at(90))["points"]
    minute = before["t"].index(int(at(0).timestamp()))

    assert downsample_and_expire(now=at(180))["folded"] == 2
    assert downsample_and_expire(now=at(180))["folded"] == 0  # again: nothing counted twice

    minutes = {p.track: p for p in MetricPoint.objects.filter(resolution=COARSE)}
    assert (minutes["stable"].requests, minutes["stable"].errors, minutes["stable"].version) == (60, 0, 1)
    assert (minutes["canary"].requests, minutes["canary"].errors, minutes["canary"].version) == (10, 1, 2)
    assert minutes["canary"].latency_buckets == {"2000": 3, "4000": 6}
    assert minutes["canary"].replicas_ready == 2  # its own last point's
    # Read from minutes, the deployment's traffic is what its 10 s points said.
    after = series(deployment, 8 * 3600, now=at(90))["points"]
    index = after["t"].index(int(at(0).timestamp()))
    assert after["rps"][index] == before["rps"][minute] == pytest.approx(70 / 60, abs=0.001)
    assert after["p95_ms"][index] == before["p95_ms"][minute]
    assert after["replicas_ready"][index] == 1 + 2  # each track's last count


def test_before_and_after_a_rollout_counts_every_track(staging):
    [deployment] = serving_deployments(staging)
    rollout = deployment.live_rollout
    rollout.finished_at = timezone.now() - timedelta(minutes=1)
    pivot = align(rollout.finished_at, FINE)
    MetricPoint.objects.bulk_create(
        [
            point(deployment, pivot - timedelta(seconds=20), "stable", requests=90),
            point(deployment, pivot - timedelta(seconds=20), "canary", requests=10, errors=10),
            point(deployment, pivot + timedelta(seconds=20), "stable", requests=50),
        ]
    )

    result = before_after(rollout)

    assert (result["before"]["requests"], result["before"]["error_rate"]) == (100, 0.1)
    assert result["before"]["rps"] == 10.0  # 100 requests in one 10 s interval, not two
    assert result["after"]["requests"] == 50


# --- the API --------------------------------------------------------------------------------


def test_the_metrics_api_gives_the_whole_deployment_or_one_track(api, viewer, staging):
    [deployment] = serving_deployments(staging)
    recent = align(timezone.now(), FINE) - timedelta(seconds=60)
    MetricPoint.objects.bulk_create(
        [
            point(deployment, recent, "stable", requests=90, errors=0),
            point(deployment, recent, "canary", requests=10, errors=4),
        ]
    )
    url = f"/api/v1/deployments/{deployment.pk}/metrics/"

    def totals(**query):
        response = api(viewer).get(url, {"window": 900, **query})
        assert response.status_code == 200, response.content
        return response.json()["totals"]

    assert (totals()["requests"], totals()["errors"]) == (100, 4)
    assert (totals(track="stable")["requests"], totals(track="stable")["errors"]) == (90, 0)
    assert (totals(track="canary")["requests"], totals(track="canary")["error_rate"]) == (10, 0.4)
    refused = api(viewer).get(url, {"track": "preview"})
    assert refused.status_code == 400 and "track" in refused.json()["fields"]


def test_the_track_parameter_is_in_the_openapi_schema():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    [operation] = [ops["get"] for path, ops in schema["paths"].items() if path.endswith("/metrics/")]

    [track] = [p for p in operation["parameters"] if p["name"] == "track"]

    assert track["in"] == "query" and not track.get("required")
    assert track["schema"]["enum"] == ["stable", "canary"]
