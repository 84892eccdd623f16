import json

from django import template

from console.choices import badge_choice_set

register = template.Library()


@register.filter
def pretty_json(value) -> str:
    """Audit before/after as readable JSON (autoescaped by the template)."""
    if value is None:
        return ""
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


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
