"""Selectors: a deployment's traffic over time for charts and the API, and a dashboard summary.

``series(deployment, window_seconds, step_seconds=None)`` returns::

    {
      "window": 3600,              # seconds asked for
      "step": 60,                  # seconds per point (a multiple of the resolution)
      "resolution": 10,            # stored points used: 10 (windows up to 6 h) or 60
      "points": {                  # parallel arrays, oldest first, one entry per step
        "t": [1767225600, ...],    # start of the step, epoch seconds (UTC)
        "rps": [...],              # requests / seconds covered by stored points in the step
        "error_rate": [...],       # errors / requests (null without requests)
        "p50_ms": [...], "p95_ms": [...], "p99_ms": [...],  # from the step's summed buckets
        "replicas_ready": [...],   # of the step's last point
        "version": [...]           # the version if it served the whole step, else null
      },
      "version_changes": [{"t": 1767226800, "from": 1, "to": 2}],  # at the first point of "to"
      "totals": {"seconds", "requests", "errors", "error_rate", "rps", "p50_ms", "p95_ms", "p99_ms"}
    }

A step without any stored point is null in every array (not zero): nothing was measured
(not serving yet, or the scraper was down). A stored point with no traffic gives rps 0 and
null error rate and percentiles. rps is over the seconds the step's stored points cover (a
minute point, folded or built from 10 s points not folded yet, covers its minute), so the
step containing ``now``, included and partial, is not understated. The totals are over one
window, ``seconds`` long (the window asked for, in whole points, ending with the point that
holds ``now``): ``requests`` counts it and ``rps`` is ``requests / seconds``
(``window_totals``).
"""

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from django.db.models import Count, Sum
from django.db.models.functions import TruncMinute
from django.utils import timezone

from deployer.canary.analysis import TrackWindow
from deployer.metrics.arithmetic import Interval, add
from deployer.metrics.points import COARSE, FINE, VALUES, align, combine, interval_of, spans
from deployer.models import MetricPoint

FINE_WINDOW = 6 * 3600  # the longest window served from 10 s points (their retention)
MAX_WINDOW = 7 * 86400
SPARKLINE_MINUTES = 15
_SERIES = ("rps", "error_rate", "p50_ms", "p95_ms", "p99_ms", "replicas_ready", "version")


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _bucket(rows: list[dict], resolution: int) -> dict:
    """One step's values from its stored points."""
    merged = combine(rows)
    seconds = len(rows) * resolution
    requests = merged["requests"]
    return {
        "rps": _round(requests / seconds),
        "error_rate": _round(merged["errors"] / requests, 4) if requests else None,
        **{name: _round(merged[name]) for name in ("p50_ms", "p95_ms", "p99_ms")},
        "replicas_ready": merged["replicas_ready"],
        "version": merged["version"],
    }


def _rows(deployment_id: int, resolution: int, start: datetime, end: datetime) -> list[dict]:
    rows = list(
        MetricPoint.objects.filter(deployment_id=deployment_id, resolution=resolution, at__gte=start, at__lt=end)
        .order_by("at")
        .values(*VALUES)
    )
    if resolution == FINE:
        return rows
    # The last minutes are not folded yet (retention.FOLD_AFTER): build them from their 10 s
    # points so a long window does not end in a gap.
    tail_from = rows[-1]["at"] + timedelta(seconds=COARSE) if rows else start
    fine = (
        MetricPoint.objects.filter(deployment_id=deployment_id, resolution=FINE, at__gte=tail_from, at__lt=end)
        .order_by("at")
        .values(*VALUES)
    )
    minutes = defaultdict(list)
    for row in fine:
        minutes[align(row["at"], COARSE)].append(row)
    return rows + [{"at": minute, **combine(points)} for minute, points in sorted(minutes.items())]


def _version_changes(rows: list[dict]) -> list[dict]:
    changes, current = [], None
    for row in rows:
        version = row["version"]
        if version is None:
            continue  # changed within this point: the next known one says to what
        if current is not None and version != current:
            changes.append({"t": _epoch(row["at"]), "from": current, "to": version})
        current = version
    return changes


def window_totals(rows: list[dict], *, start: datetime, end: datetime) -> dict:
    """The traffic of the stored points in [start, end), and the average rate over those same
    seconds: one window for the count and the rate, so rps × seconds is the request count
    (a gap in the points is a gap in traffic, not a shorter window)."""
    inside = [r for r in rows if start <= r["at"] < end]
    total = add(*(interval_of(r) for r in inside)) if inside else Interval()
    seconds = int((end - start).total_seconds())
    return {
        "seconds": seconds,
        "requests": total.requests,
        "errors": total.errors,
        "error_rate": _round(total.error_rate, 4),
        "rps": _round(total.requests / seconds, 4),
        "p50_ms": _round(total.percentile(0.5)),
        "p95_ms": _round(total.percentile(0.95)),
        "p99_ms": _round(total.percentile(0.99)),
    }


def series(deployment, window_seconds: int, step_seconds: int | None = None, *, now: datetime | None = None) -> dict:
    """The deployment's traffic over the last ``window_seconds`` (shape in the module docstring)."""
    if not 0 < window_seconds <= MAX_WINDOW:
        raise ValueError(f"window must be between 1 s and {MAX_WINDOW} s")
    resolution = FINE if window_seconds <= FINE_WINDOW else COARSE
    step = max(resolution, math.ceil((step_seconds or resolution) / resolution) * resolution)
    now = now or timezone.now()
    end = align(now, step) + timedelta(seconds=step)
    starts = spans(end - timedelta(seconds=math.ceil(window_seconds / step) * step), end, step)
    # The totals' window: the last window_seconds (in whole points) up to the end of the point
    # still filling now.
    window_end = align(now, resolution) + timedelta(seconds=resolution)
    window_start = window_end - timedelta(seconds=math.ceil(window_seconds / resolution) * resolution)
    rows = _rows(deployment.pk, resolution, min(starts[0], window_start), end)

    by_step = defaultdict(list)
    for row in rows:
        by_step[align(row["at"], step)].append(row)
    points: dict[str, list] = {"t": [_epoch(s) for s in starts], **{name: [] for name in _SERIES}}
    for start in starts:
        values = _bucket(by_step[start], resolution) if by_step.get(start) else dict.fromkeys(_SERIES)
        for name in _SERIES:
            points[name].append(values[name])
    return {
        "window": window_seconds,
        "step": step,
        "resolution": resolution,
        "points": points,
        "version_changes": _version_changes([r for r in rows if r["at"] >= starts[0]]),
        "totals": window_totals(rows, start=window_start, end=window_end),
    }


def summary(deployments, *, now: datetime | None = None) -> dict[int, dict]:
    """For a dashboard, per deployment id: the last minute's rps, p95 and error rate, the
    replica counts and version of the latest point, and a sparkline of rps per minute over
    the last 15 complete minutes (null where nothing was measured). Two queries, however
    many deployments."""
    ids = [d.pk for d in deployments]
    now = now or timezone.now()
    last_end = align(now, FINE)
    recent = defaultdict(list)
    for row in (
        MetricPoint.objects.filter(
            deployment_id__in=ids, resolution=FINE, at__gte=last_end - timedelta(seconds=COARSE), at__lt=last_end
        )
        .order_by("deployment_id", "at")
        .values("deployment_id", *VALUES)
    ):
        recent[row["deployment_id"]].append(row)

    spark_end = align(now, COARSE)
    minutes = spans(spark_end - timedelta(minutes=SPARKLINE_MINUTES), spark_end, COARSE)
    per_minute = {}
    for row in (
        MetricPoint.objects.filter(deployment_id__in=ids, resolution=FINE, at__gte=minutes[0], at__lt=spark_end)
        .annotate(minute=TruncMinute("at", tzinfo=UTC))
        .values("deployment_id", "minute")
        .annotate(requests=Sum("requests"), points=Count("id"))
        .order_by()
    ):
        per_minute[(row["deployment_id"], row["minute"])] = _round(row["requests"] / (row["points"] * FINE))

    result = {}
    for deployment_id in ids:
        rows = recent.get(deployment_id)
        last = _bucket(rows, FINE) if rows else dict.fromkeys(_SERIES)
        result[deployment_id] = {
            "rps": last["rps"],
            "p95_ms": last["p95_ms"],
            "error_rate": last["error_rate"],
            "replicas_ready": last["replicas_ready"],
            "replicas_desired": rows[-1]["replicas_desired"] if rows else None,
            "version": rows[-1]["version"] if rows else None,
            "sparkline": [per_minute.get((deployment_id, m)) for m in minutes],
        }
    return result


def track_window(deployment_id: int, track: str, start: datetime, end: datetime) -> TrackWindow:
    """One track's traffic in [start, end), for the canary analysis.

    Stand-in written by H4 (the controller) with CANARY.md's signature, until H5's per-track
    points land: without a track on MetricPoint every point is the stable track's, and the
    canary track has measured nothing (so a step is inconclusive and follows the plan)."""
    if track != "stable":
        return TrackWindow(requests=0, errors=0, p95_ms=None)
    rows = list(
        MetricPoint.objects.filter(deployment_id=deployment_id, resolution=FINE, at__gte=start, at__lt=end).values(
            *VALUES
        )
    )
    total = add(*(interval_of(r) for r in rows)) if rows else Interval()
    return TrackWindow(requests=total.requests, errors=total.errors, p95_ms=total.percentile(0.95))
