"""Fold 10-second points into 1-minute points, and expire both.

10 s points are kept 6 hours, 1-minute points 7 days. A minute is folded once it is
complete and no scrape can still add to it: scrapes only write the interval containing
their ``now``, so FOLD_AFTER past the minute's end is final. Each run folds the minutes after
the last folded one (per deployment), building every minute from its 10 s points and
upserting it: running twice, or after a crash half-way, never counts anything twice. Each
track folds into its own minutes (a canary's 10 s points into the canary's minute), so the
tracks stay apart at every resolution and their sum is the deployment's.
Folding comes before expiry in a run, so a beat that stopped for hours catches up before any
10 s point it still needs is deleted.
"""

from datetime import datetime, timedelta
from itertools import groupby

from django.db import transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from deployer.metrics.points import COARSE, FINE, VALUES, align, combine
from deployer.models import Deployment, MetricPoint

KEEP_FINE = timedelta(hours=6)
KEEP_COARSE = timedelta(days=7)
FOLD_AFTER = timedelta(minutes=2)
RUN_EVERY = 60  # seconds: the beat schedule of deployer.downsample_metrics

_UPDATE = (
    "version",
    "requests",
    "errors",
    "latency_buckets",
    "latency_sum_us",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "replicas_desired",
    "replicas_ready",
)


def max_rows(deployments: int, tracks: int = 1) -> int:
    """The most MetricPoint rows ``deployments`` deployments can have, beat on schedule.

    Per deployment and track: 6 h of 10 s points plus the interval being written, plus what
    arrives between two runs (expiry happens once per run); 7 days of minutes plus one at the
    boundary. The fold lag adds nothing: 10 s points are expired by age, folded or not. A
    canary's track has points only while it runs, so ``tracks=2`` is the bound for a
    deployment that always had a canary running."""
    fine = int(KEEP_FINE.total_seconds()) // FINE + 1 + RUN_EVERY // FINE
    coarse = int(KEEP_COARSE.total_seconds()) // COARSE + 1
    return deployments * tracks * (fine + coarse)


def _pending(cutoff: datetime) -> dict[int, datetime]:
    """Per deployment, the first minute not folded yet (only those with 10 s points to fold).
    One start for all its tracks: every track's 10 s points are written as they happen and
    folded together, so no track can hold an unfolded minute before another's folded one.

    Subqueries ordered by time, one row each, rather than MAX() ... GROUP BY: each is a seek
    in the (deployment, resolution, at) index, where a grouped aggregate would read every
    point of the week on every run."""
    points = MetricPoint.objects.filter(deployment=OuterRef("pk"))
    fine = points.filter(resolution=FINE, at__lt=cutoff)
    pending = (
        Deployment.objects.order_by()
        .annotate(
            folded=Subquery(points.filter(resolution=COARSE).order_by("-at").values("at")[:1]),
            first=Subquery(fine.order_by("at").values("at")[:1]),
            last=Subquery(fine.order_by("-at").values("at")[:1]),
        )
        .filter(last__isnull=False)
        .values_list("pk", "folded", "first", "last")
    )
    starts = {}
    for deployment_id, folded, first, last in pending:
        start = folded + timedelta(seconds=COARSE) if folded else align(first, COARSE)
        if last >= start:
            starts[deployment_id] = start
    return starts


def downsample(now: datetime | None = None) -> int:
    """Fold every complete minute not folded yet; returns how many minutes were written."""
    now = now or timezone.now()
    cutoff = align(now - FOLD_AFTER, COARSE)  # minutes starting before this are complete
    starts = _pending(cutoff)
    if not starts:
        return 0
    window = Q()
    for deployment_id, start in starts.items():
        window |= Q(deployment_id=deployment_id, at__gte=start)
    rows = (
        MetricPoint.objects.filter(window, resolution=FINE, at__lt=cutoff)
        .order_by("deployment_id", "track", "at")
        .values("deployment_id", "track", *VALUES)
    )
    minutes = [
        MetricPoint(deployment_id=deployment_id, track=track, resolution=COARSE, at=minute, **combine(list(points)))
        for (deployment_id, track, minute), points in groupby(
            rows, key=lambda r: (r["deployment_id"], r["track"], align(r["at"], COARSE))
        )
    ]
    MetricPoint.objects.bulk_create(
        minutes,
        batch_size=500,
        update_conflicts=True,
        unique_fields=["deployment", "resolution", "at", "track"],
        update_fields=_UPDATE,
    )
    return len(minutes)


def expire(now: datetime | None = None) -> int:
    now = now or timezone.now()
    fine, _ = MetricPoint.objects.filter(resolution=FINE, at__lt=now - KEEP_FINE).delete()
    coarse, _ = MetricPoint.objects.filter(resolution=COARSE, at__lt=now - KEEP_COARSE).delete()
    return fine + coarse


def downsample_and_expire(now: datetime | None = None) -> dict:
    now = now or timezone.now()
    with transaction.atomic():
        folded = downsample(now)
        expired = expire(now)
    return {"folded": folded, "expired": expired}
