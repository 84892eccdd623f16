"""Downsampling 10 s points into minutes and expiring both: exact sums, idempotent runs, and a
row count that stays within retention.max_rows however long it runs."""

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from django.utils import timezone

from deployer.manifests import resource_name
from deployer.metrics import retention
from deployer.metrics.arithmetic import Interval
from deployer.metrics.points import COARSE, FINE, traffic_fields
from deployer.metrics.retention import downsample_and_expire, max_rows
from deployer.models import Deployment, DeploymentTarget, MetricPoint, Rollout
from registry.models import ModelVersion, RegisteredModel

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # a minute boundary
_names = count(1)


def serving_deployments(environment, number: int = 1, *, version: int = 1, **target_fields) -> list[Deployment]:
    """Serving deployments written directly (no model server): these tests are about the
    metric rows, not about rolling out."""
    now = timezone.now()
    target = DeploymentTarget.objects.filter(environment=environment).first() or DeploymentTarget.objects.create(
        environment=environment, **target_fields
    )
    made = []
    for _ in range(number):
        model = RegisteredModel.objects.create(name=f"metrics-{next(_names)}", created_at=now, updated_at=now)
        versions = [
            ModelVersion.objects.create(
                model=model, version=v, source=f"models:/{model.name}/{v}", created_at=now, updated_at=now
            )
            for v in range(1, version + 1)
        ]
        deployment = Deployment.objects.create(
            target=target, model=model, state=Deployment.SERVING, name=resource_name(model.name, environment.name)
        )
        deployment.live_rollout = Rollout.objects.create(
            deployment=deployment, revision=1, version=versions[-1], state=Rollout.LIVE
        )
        deployment.save(update_fields=["live_rollout"])
        made.append(deployment)
    return made


def fine_point(deployment, at, *, requests=10, errors=0, buckets=None, version=1, ready=1) -> MetricPoint:
    interval = Interval(
        requests=requests, errors=errors, buckets=buckets or {"1000": requests}, latency_sum_us=500.0 * requests
    )
    return MetricPoint(
        deployment=deployment,
        resolution=FINE,
        at=at,
        version=version,
        replicas_desired=1,
        replicas_ready=ready,
        **traffic_fields(interval),
    )


def test_a_complete_minute_folds_into_one_point_with_sums_and_recomputed_percentiles(staging):
    [deployment] = serving_deployments(staging)
    MetricPoint.objects.bulk_create(
        [
            fine_point(deployment, T0, requests=10, errors=1, buckets={"1000": 10}),
            fine_point(deployment, T0 + timedelta(seconds=10), requests=10, errors=0, buckets={"1000": 0, "2000": 10}),
            fine_point(deployment, T0 + timedelta(seconds=50), requests=0, buckets={}, ready=2),
        ]
    )

    assert downsample_and_expire(now=T0 + timedelta(minutes=1, seconds=59))["folded"] == 0  # not final yet
    assert downsample_and_expire(now=T0 + timedelta(minutes=3))["folded"] == 1

    minute = MetricPoint.objects.get(resolution=COARSE)
    assert minute.at == T0 and minute.requests == 20 and minute.errors == 1
    assert minute.latency_buckets == {"1000": 10, "2000": 10} and minute.latency_sum_us == 10000
    # p95 of the summed buckets: rank 19 of 20, 9 into (1000, 2000] µs. Averaging the two
    # points' own p95s (0.95 ms and 1.95 ms) would have said 1.45.
    assert minute.p95_ms == pytest.approx(1.9)
    assert minute.version == 1 and minute.replicas_ready == 2  # the last point's count


def test_a_minute_in_which_the_version_changed_has_no_version(staging):
    [deployment] = serving_deployments(staging)
    MetricPoint.objects.bulk_create(
        [fine_point(deployment, T0, version=1), fine_point(deployment, T0 + timedelta(seconds=30), version=2)]
    )

    downsample_and_expire(now=T0 + timedelta(minutes=5))

    assert MetricPoint.objects.get(resolution=COARSE).version is None


def test_running_it_again_never_counts_twice(staging):
    [deployment] = serving_deployments(staging)
    MetricPoint.objects.bulk_create(fine_point(deployment, T0 + timedelta(seconds=10 * i)) for i in range(18))
    now = T0 + timedelta(minutes=5)

    first = downsample_and_expire(now=now)
    again = downsample_and_expire(now=now)
    later = downsample_and_expire(now=now + timedelta(minutes=1))

    assert first["folded"] == 3 and again["folded"] == 0 and later["folded"] == 0
    assert list(MetricPoint.objects.filter(resolution=COARSE).values_list("requests", flat=True)) == [60, 60, 60]


def test_a_minute_rebuilt_after_a_crash_half_way_is_the_same(staging):
    """Folding writes whole minutes; one written before a crash is simply written again."""
    [deployment] = serving_deployments(staging)
    MetricPoint.objects.bulk_create(fine_point(deployment, T0 + timedelta(seconds=10 * i)) for i in range(12))
    MetricPoint.objects.create(deployment=deployment, resolution=COARSE, at=T0 - timedelta(minutes=1), requests=7)

    downsample_and_expire(now=T0 + timedelta(minutes=4))

    assert dict(MetricPoint.objects.filter(resolution=COARSE).values_list("at", "requests")) == {
        T0 - timedelta(minutes=1): 7,
        T0: 60,
        T0 + timedelta(minutes=1): 60,
    }


def test_old_points_expire_but_only_after_they_were_folded(staging):
    [deployment] = serving_deployments(staging)
    old = T0 - timedelta(hours=7)
    MetricPoint.objects.bulk_create([fine_point(deployment, old), fine_point(deployment, T0)])
    MetricPoint.objects.create(deployment=deployment, resolution=COARSE, at=T0 - timedelta(days=8), requests=1)

    downsample_and_expire(now=T0 + timedelta(minutes=5))

    assert set(MetricPoint.objects.values_list("resolution", "at")) == {
        (FINE, T0),
        (COARSE, old),
        (COARSE, T0),
    }  # the 7 h old point survives as its minute


def test_the_row_count_stays_within_the_retention_formula_over_30_hours(staging):
    """Two deployments scraped every 10 s for 30 hours after a full week of minutes,
    downsampled every minute: never more rows than max_rows, and folding keeps every request."""
    deployments = serving_deployments(staging, 2)
    start = T0 - timedelta(days=7)
    MetricPoint.objects.bulk_create(
        (
            MetricPoint(deployment=d, resolution=COARSE, at=start + timedelta(minutes=m), requests=60)
            for d in deployments
            for m in range(7 * 24 * 60)
        ),
        batch_size=2000,
    )
    limit = max_rows(len(deployments))
    assert limit == 2 * (2160 + 7 + 10081)
    highest = 0
    for minute in range(30 * 60):
        moment = T0 + timedelta(minutes=minute)
        MetricPoint.objects.bulk_create(
            fine_point(d, moment + timedelta(seconds=10 * i), requests=i + 1) for d in deployments for i in range(6)
        )
        downsample_and_expire(now=moment + timedelta(seconds=59))
        rows = MetricPoint.objects.count()
        highest = max(highest, rows)
        assert rows <= limit, f"{rows} rows after {minute} minutes"
    # The bound is tight, not loose: at the end each deployment holds 6 h of 10 s points and a week of minutes.
    assert highest >= limit - 2 * (7 + 2 + 3)
    end = T0 + timedelta(minutes=30 * 60 - 1, seconds=59)
    assert MetricPoint.objects.filter(resolution=FINE).earliest("at").at >= end - retention.KEEP_FINE
    assert MetricPoint.objects.filter(resolution=COARSE).earliest("at").at >= end - retention.KEEP_COARSE
    # Every folded minute of the 30 h holds its six points' 1+2+...+6 requests.
    folded = MetricPoint.objects.filter(resolution=COARSE, at__gte=T0)
    assert set(folded.values_list("requests", flat=True)) == {21}
    assert folded.count() == 2 * (30 * 60 - 3)  # the last minutes are not final yet (FOLD_AFTER)
