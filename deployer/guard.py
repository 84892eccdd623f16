"""The guard after a rollout: for a while after a version goes live, its error rate and p95
latency are compared with the target's thresholds; a breach rolls it back automatically.

``evaluate`` is a pure function of the interval points; ``guard_check_all`` (beat, every
10 s) feeds it the version's points since it went live.
"""

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from django.utils import timezone

from deployer import services
from deployer.metrics.arithmetic import add_buckets, quantile
from deployer.metrics.points import align
from deployer.models import MetricPoint, Rollout

log = logging.getLogger(__name__)
# Fewer requests than this say nothing reliable about an error rate or a percentile.
MIN_REQUESTS = 20


def evaluate(
    points: Sequence[Mapping[str, Any]],
    *,
    error_rate: float | None,
    p95_ms: float | None,
    min_requests: int = MIN_REQUESTS,
) -> str | None:
    """The breach as a sentence, or None. points: [{"requests", "errors", "latency_buckets"}]."""
    requests = sum(p["requests"] for p in points)
    if requests < min_requests:
        return None
    errors = sum(p["errors"] for p in points)
    if error_rate is not None and errors / requests > error_rate:
        return (
            f"error rate {errors / requests:.1%} ({errors} of {requests} requests) is above the "
            f"guard's {error_rate:.1%}."
        )
    if p95_ms is not None:
        observed = quantile(0.95, add_buckets(*(p["latency_buckets"] or {} for p in points)))
        if observed is not None and observed > p95_ms:
            return f"p95 latency {observed:.1f} ms over {requests} requests is above the guard's {p95_ms:g} ms."
    return None


def guard_check(rollout: Rollout, now=None) -> str:
    now = now or timezone.now()
    # Only a rollout that went live is watched: it has finished, with a version.
    assert rollout.finished_at is not None and rollout.version is not None, f"rollout {rollout.pk} is not live"
    target = rollout.deployment.target
    points = list(
        MetricPoint.objects.filter(
            # From the interval in which it went live: its scrape already counts the new version.
            # Every track's points of that version: the guard judges all the traffic it served
            # (a canary's track has ended by then, and its points before going live are earlier).
            deployment_id=rollout.deployment_id,
            resolution=10,
            at__gte=align(rollout.finished_at, 10),
            version=rollout.version.version,
        ).values("requests", "errors", "latency_buckets")
    )
    reason = evaluate(points, error_rate=target.guard_error_rate, p95_ms=target.guard_p95_ms)
    if reason:
        minutes = max(1, round((now - rollout.finished_at).total_seconds() / 60))
        services.rollout_guard_breached(rollout_id=rollout.pk, reason=f"{reason} (within {minutes} min of going live)")
        return "breached"
    if now >= rollout.guard_until:
        services.rollout_guard_passed(rollout_id=rollout.pk)
        return "passed"
    return "watching"


def guard_check_all(now=None) -> dict:
    outcomes = {}
    for rollout in Rollout.objects.filter(guard_state="watching").select_related("deployment__target", "version"):
        try:
            outcomes[rollout.pk] = guard_check(rollout, now)
        except Exception:  # one broken guard must not stop the others
            log.exception("Guard check of rollout %s failed", rollout.pk)
    return outcomes
