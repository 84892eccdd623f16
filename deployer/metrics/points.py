"""MetricPoint fields from intervals, and several points as one: pure, shared by the scraper
(two scrapes in one interval), the downsampling (six 10 s points in a minute), the charts
(points re-bucketed to a step) and every reader of a deployment's traffic (its tracks'
points in one interval summed, ``tracks_summed``)."""

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import groupby

from deployer.metrics.arithmetic import Interval, add

FINE, COARSE = 10, 60  # the two resolutions, in seconds
PERCENTILES = (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99))
VALUES = (
    "at",
    "version",
    "requests",
    "errors",
    "latency_buckets",
    "latency_sum_us",
    "replicas_desired",
    "replicas_ready",
)  # what combine() reads from a row


def align(moment: datetime, seconds: int) -> datetime:
    """The start of the ``seconds``-long interval containing ``moment`` (aligned to the epoch)."""
    epoch = int(moment.timestamp()) // seconds * seconds
    return datetime.fromtimestamp(epoch, tz=UTC)


def interval_of(row: Mapping) -> Interval:
    return Interval(
        requests=row["requests"],
        errors=row["errors"],
        buckets=dict(row["latency_buckets"] or {}),
        latency_sum_us=row["latency_sum_us"],
    )


def traffic_fields(interval: Interval) -> dict:
    """The traffic columns of a MetricPoint, percentiles computed from the buckets."""
    return {
        "requests": interval.requests,
        "errors": interval.errors,
        "latency_buckets": interval.buckets,
        "latency_sum_us": interval.latency_sum_us,
        **{name: interval.percentile(q) for name, q in PERCENTILES},
    }


def one_version(versions: Iterable[int | None]) -> int | None:
    """The version if every interval agrees on it; None when it changed (or is unknown)."""
    distinct = set(versions)
    return distinct.pop() if len(distinct) == 1 else None


def combine(rows: Sequence[Mapping]) -> dict:
    """Rows (ordered by time) as one point: traffic summed, percentiles from the summed
    buckets (never averaged), the version if they agree, the replica counts of the last."""
    return {
        **traffic_fields(add(*(interval_of(r) for r in rows))),
        "version": one_version(r["version"] for r in rows),
        "replicas_desired": rows[-1]["replicas_desired"],
        "replicas_ready": rows[-1]["replicas_ready"],
    }


def _known_sum(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def tracks_summed(rows: Iterable[Mapping]) -> list[Mapping]:
    """Rows ordered by time, one per track and interval, as one row per interval: the whole
    deployment's traffic. During a canary release an interval has a point per track (stable
    and canary); the deployment served their sum, with percentiles from the summed buckets,
    the version if both tracks served the same one (so None while two versions serve), and
    the replicas of both tracks. An interval with one point is passed through as it is."""
    out: list[Mapping] = []
    for _, group in groupby(rows, key=lambda r: r["at"]):
        parts = list(group)
        if len(parts) == 1:
            out.append(parts[0])
            continue
        out.append(
            {
                "at": parts[0]["at"],
                **traffic_fields(add(*(interval_of(r) for r in parts))),
                "version": one_version(r["version"] for r in parts),
                "replicas_desired": _known_sum(r["replicas_desired"] for r in parts),
                "replicas_ready": _known_sum(r["replicas_ready"] for r in parts),
            }
        )
    return out


def spans(start: datetime, end: datetime, step: int) -> list[datetime]:
    """The starts of the step-long buckets from ``start`` (aligned) to ``end`` (exclusive)."""
    out, moment = [], start
    while moment < end:
        out.append(moment)
        moment += timedelta(seconds=step)
    return out
