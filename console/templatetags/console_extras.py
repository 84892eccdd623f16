import json

from django import template

register = template.Library()


@register.filter
def pretty_json(value) -> str:
    """Audit before/after as readable JSON (autoescaped by the template)."""
    if value is None:
        return ""
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)
