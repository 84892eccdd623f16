"""The traffic just before and just after a rollout went live, side by side."""

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from django.utils import timezone

from deployer.metrics.arithmetic import add
from deployer.metrics.points import FINE, VALUES, align, interval_of, tracks_summed
from deployer.models import MetricPoint


def _summary(rows: Sequence[Mapping[str, Any]]) -> dict | None:
    if not rows:
        return None
    total = add(*(interval_of(r) for r in rows))
    return {
        "requests": total.requests,
        "rps": total.requests / (len(rows) * FINE),
        "error_rate": total.error_rate,
        "p50_ms": total.percentile(0.5),
        "p95_ms": total.percentile(0.95),
        "p99_ms": total.percentile(0.99),
        "minutes": len(rows) * FINE / 60,
    }


def before_after(rollout, minutes: int = 10) -> dict | None:
    """{"before", "after"} summaries over up to ``minutes`` each side of the moment the
    rollout finished (10 s points; the interval it finished in belongs to neither), of the
    whole deployment: a canary's track counts with the stable one."""
    if rollout.finished_at is None:
        return None
    pivot = align(rollout.finished_at, FINE)
    span = timedelta(minutes=minutes)
    rows = tracks_summed(
        MetricPoint.objects.filter(
            deployment_id=rollout.deployment_id,
            resolution=FINE,
            at__gte=pivot - span,
            at__lt=min(pivot + span, timezone.now()),
        )
        .order_by("at", "track")
        .values(*VALUES)
    )
    before = [r for r in rows if r["at"] < pivot]
    after = [r for r in rows if r["at"] > pivot]
    if not before and not after:
        return None
    return {"before": _summary(before), "after": _summary(after), "minutes": minutes}
