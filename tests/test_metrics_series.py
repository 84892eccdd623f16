"""The chart series and the dashboard summary read from metric points: gaps stay null,
steps re-bucket with percentiles from summed buckets, version changes, constant queries."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from deployer.metrics.points import COARSE
from deployer.metrics.series import series, summary
from deployer.models import MetricPoint
from tests.test_metrics_retention import T0, fine_point, serving_deployments

pytestmark = pytest.mark.django_db
NOW = T0 + timedelta(seconds=5)


def ago(seconds: int):
    return T0 - timedelta(seconds=seconds)


def test_intervals_without_a_point_are_null_and_a_quiet_one_is_zero(staging):
    [deployment] = serving_deployments(staging)
    MetricPoint.objects.bulk_create(
        [
            fine_point(deployment, ago(40), requests=20, errors=5),
            fine_point(deployment, ago(20), requests=0, buckets={}),
        ]
    )

    data = series(deployment, 60, now=NOW)

    assert (data["window"], data["step"], data["resolution"]) == (60, 10, 10)
    points = data["points"]
    assert points["t"] == [int(ago(s).timestamp()) for s in (50, 40, 30, 20, 10, 0)]
    assert points["rps"] == [None, 2.0, None, 0.0, None, None]
    assert points["error_rate"] == [None, 0.25, None, None, None, None]
    assert points["p95_ms"][1] == pytest.approx(0.95) and points["p95_ms"][3] is None
    assert points["replicas_ready"] == [None, 1, None, 1, None, None]
    assert points["version"] == [None, 1, None, 1, None, None]
    assert data["totals"] == {
        "seconds": 60,
        "requests": 20,
        "errors": 5,
        "error_rate": 0.25,
        "rps": round(20 / 60, 4),
        "p50_ms": 0.5,
        "p95_ms": 0.95,
        "p99_ms": 0.99,
    }


def test_a_step_sums_its_points_and_recomputes_percentiles_from_their_buckets(staging):
    [deployment] = serving_deployments(staging)
    MetricPoint.objects.bulk_create(
        [
            fine_point(deployment, ago(60), requests=30, buckets={"1000": 30}),
            fine_point(deployment, ago(50), requests=10, buckets={"1000": 0, "2000": 10}),
            fine_point(deployment, ago(40), requests=20, buckets={"1000": 20}, ready=3),
        ]
    )

    data = series(deployment, 120, step_seconds=60, now=NOW)

    assert data["step"] == 60 and data["points"]["t"] == [int(ago(60).timestamp()), int(T0.timestamp())]
    # 60 requests over the 30 s the three points cover (not over the whole minute)
    assert data["points"]["rps"] == [2.0, None]
    # rank 57 of 60: 7 into (1000, 2000] µs holding 10
    assert data["points"]["p95_ms"] == [pytest.approx(1.7), None]
    assert data["points"]["replicas_ready"] == [3, None]


@pytest.mark.parametrize("window, step", [(900, None), (900, 60), (3600, 60), (24 * 3600, None)])
def test_the_average_rate_times_the_window_is_the_request_count(staging, window, step):
    [deployment] = serving_deployments(staging)
    MetricPoint.objects.bulk_create(
        [
            fine_point(deployment, ago(window + 60), requests=1000),  # just before the window
            fine_point(deployment, ago(window - 60), requests=60),  # inside, at either resolution
            fine_point(deployment, ago(200), requests=200),
            fine_point(deployment, T0, requests=7),  # the point still filling now
        ]
    )

    totals = series(deployment, window, step_seconds=step, now=NOW)["totals"]

    assert totals["seconds"] == window and totals["requests"] == 60 + 200 + 7
    assert totals["rps"] * totals["seconds"] == pytest.approx(totals["requests"], abs=0.05 * window / 1000)


def test_steps_are_whole_multiples_of_the_resolution(staging):
    [deployment] = serving_deployments(staging)

    assert series(deployment, 3600, step_seconds=25, now=NOW)["step"] == 30
    assert series(deployment, 3600, step_seconds=1, now=NOW)["step"] == 10
    assert len(series(deployment, 3600, step_seconds=60, now=NOW)["points"]["t"]) == 60


def test_version_changes_are_marked_where_the_new_version_first_served(staging):
    [deployment] = serving_deployments(staging, version=2)
    MetricPoint.objects.bulk_create(
        [
            fine_point(deployment, ago(40), version=1),
            fine_point(deployment, ago(30), version=None),  # changed within it
            fine_point(deployment, ago(20), version=2),
            fine_point(deployment, ago(10), version=1),
        ]
    )

    data = series(deployment, 60, now=NOW)

    assert data["version_changes"] == [
        {"t": int(ago(20).timestamp()), "from": 1, "to": 2},
        {"t": int(ago(10).timestamp()), "from": 2, "to": 1},
    ]
    assert series(deployment, 60, step_seconds=60, now=NOW)["points"]["version"] == [None]


def test_long_windows_read_minutes_and_the_minutes_not_folded_yet_from_10_s_points(staging):
    [deployment] = serving_deployments(staging)
    MetricPoint.objects.bulk_create(
        [
            MetricPoint(
                deployment=deployment,
                resolution=COARSE,
                at=ago(3600 * 20),
                requests=600,
                version=1,
                latency_buckets={"1000": 600},
            ),
            MetricPoint(
                deployment=deployment,
                resolution=COARSE,
                at=ago(180),
                requests=120,
                version=1,
                latency_buckets={"1000": 120},
            ),
            fine_point(deployment, ago(120), requests=10),  # this minute and the next are not folded yet
            fine_point(deployment, ago(110), requests=20),
            fine_point(deployment, ago(50), requests=6),
        ]
    )

    data = series(deployment, 24 * 3600, now=NOW)

    assert (data["resolution"], data["step"]) == (60, 60)
    assert len(data["points"]["t"]) == 24 * 60
    rps = data["points"]["rps"]
    # a minute is a minute, folded or not: its rps does not change when it is folded
    assert rps[-1] is None and rps[-2] == pytest.approx(0.1) and rps[-3] == pytest.approx(0.5)
    assert rps[-4] == 2.0 and rps[-5] is None
    assert rps[-1 - 20 * 60] == 10.0
    assert data["totals"]["requests"] == 600 + 120 + 36


def test_windows_outside_retention_are_refused(staging):
    [deployment] = serving_deployments(staging)

    for window in (0, 8 * 86400):
        with pytest.raises(ValueError):
            series(deployment, window, now=NOW)


def test_the_summary_has_the_last_minute_and_a_15_minute_sparkline(staging):
    busy, idle = serving_deployments(staging, 2)
    last_minute = [fine_point(busy, ago(s), requests=30, errors=3 if s == 10 else 0, ready=2) for s in (60, 30, 10)]
    older = [fine_point(busy, ago(60 * m + 10), requests=12) for m in (1, 5)]
    MetricPoint.objects.bulk_create(last_minute + older + [fine_point(busy, ago(20 * 60), requests=99)])

    result = summary([busy, idle], now=NOW)

    assert result[idle.pk] == {
        "rps": None,
        "p95_ms": None,
        "error_rate": None,
        "replicas_ready": None,
        "replicas_desired": None,
        "version": None,
        "sparkline": [None] * 15,
    }
    # the last six 10 s intervals (-60 s to 0) hold three points of 30 requests: 90 over 30 s
    assert result[busy.pk]["rps"] == 3.0 and result[busy.pk]["error_rate"] == round(3 / 90, 4)
    assert result[busy.pk]["p95_ms"] == pytest.approx(0.95) and result[busy.pk]["replicas_ready"] == 2
    assert result[busy.pk]["version"] == 1
    # per complete minute, oldest first; the point 20 minutes ago is outside
    spark = result[busy.pk]["sparkline"]
    assert spark[-1] == 3.0 and spark[-2] == 1.2 and spark[-6] == 1.2
    assert spark.count(None) == 12


def test_the_summary_costs_the_same_queries_for_one_deployment_or_five(staging):
    deployments = serving_deployments(staging, 5)
    MetricPoint.objects.bulk_create(fine_point(d, ago(s)) for d in deployments for s in range(10, 900, 10))

    def queries(subset) -> int:
        with CaptureQueriesContext(connection) as captured:
            summary(subset, now=NOW)
        return len(captured.captured_queries)

    assert queries(deployments[:1]) == queries(deployments) == 2
