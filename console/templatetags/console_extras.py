"""Filters every template may use (a builtin library: console/settings.py TEMPLATES)."""

import json
from datetime import timedelta

from django import template
from django.apps import apps
from django.utils import timezone
from django.utils.timesince import timesince

from console.choices import badge_choice_set

register = template.Library()


@register.filter
def pretty_json(value) -> str:
    """Audit before/after as readable JSON (autoescaped by the template)."""
    if value is None:
        return ""
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


@register.filter
def ago(value) -> str:
    """How long ago, for people: "just now" under a minute (where timesince says "0 minutes",
    and for a moment a clock ahead of ours put in the future), else "3 minutes ago"."""
    if not value:
        return ""
    if timezone.now() - value < timedelta(minutes=1):
        return "just now"
    return f"{timesince(value)} ago"


@register.filter
def model_label(object_type: str) -> str:
    """An audit event's object type as people say it: "promotions.promotionrequest" ->
    "promotion request" (the model's verbose_name); a type no model has any more stays as is."""
    try:
        return str(apps.get_model(object_type)._meta.verbose_name)
    except (LookupError, ValueError):
        return object_type


@register.inclusion_tag("includes/badge.html")
def state_badge(value, choice_set: str, title: str = "") -> dict:
    """``{% state_badge req.state "PromotionState" %}``: the label of ``value`` in the
    BadgeChoices set of that name (console.choices), in its colour. A value the set does not
    know shows as itself, muted; a set name nobody defines is an error."""
    choices = badge_choice_set(choice_set)
    try:
        # An enum looked up by value; mypy reads the call as the members' own __new__.
        member = choices(value)  # type: ignore[call-arg]
    except ValueError:
        return {"label": value, "colour": "muted", "title": title}
    return {"label": member.label, "colour": member.colour, "title": title}
