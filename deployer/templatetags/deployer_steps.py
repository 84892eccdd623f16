"""Filters for rollout steps, whose times are ISO strings in the rollout's JSON."""

from datetime import datetime, timedelta

from django import template
from django.utils.dateparse import parse_datetime

from deployer.canary import progress

register = template.Library()


@register.filter
def as_datetime(value) -> datetime | None:
    """An ISO timestamp from a step (or a datetime) as a datetime; None if empty or unreadable."""
    if isinstance(value, datetime):
        return value
    try:
        return parse_datetime(value) if value else None
    except ValueError:
        return None


@register.filter
def step_duration(step: dict) -> timedelta | None:
    started, finished = as_datetime(step.get("started_at")), as_datetime(step.get("finished_at"))
    if started and finished:
        return finished - started
    return None


@register.filter
def duration(value: timedelta | None) -> str:
    """3.2 s, 4 min 05 s, 1 h 02 min; empty for None."""
    if value is None:
        return ""
    seconds = max(value.total_seconds(), 0)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@register.filter
def canary_progress(rollout) -> dict | None:
    """A canary rollout's progress (``deployer.canary.progress.page``), for the pages that
    show its steps; None for a rollout that is not a canary."""
    return progress.page(rollout)
