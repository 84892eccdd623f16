from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

register = template.Library()


@register.simple_tag
def sparkline(values, width=120, height=24):
    """An inline SVG line of the values (None: a gap, nothing measured)."""
    known = [v for v in values or [] if v is not None]
    if not known:
        return format_html('<span class="muted small">no data</span>')
    top = max(known) or 1.0
    step = width / max(1, len(values) - 1)
    segments, current = [], []
    for i, value in enumerate(values):
        if value is None:
            if current:
                segments.append(current)
            current = []
            continue
        current.append(f"{i * step:.1f},{height - 2 - (value / top) * (height - 4):.1f}")
    if current:
        segments.append(current)
    lines = "".join(
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{" ".join(s)}"/>'
        if len(s) > 1
        else f'<circle r="1.5" fill="currentColor" cx="{s[0].split(",")[0]}" cy="{s[0].split(",")[1]}"/>'
        for s in segments
    )
    return format_html(
        '<svg class="sparkline" width="{}" height="{}" viewBox="0 0 {} {}" role="img" '
        'aria-label="requests per second, last 15 minutes, peak {} per second">{}</svg>',
        width,
        height,
        width,
        height,
        f"{top:.1f}",
        mark_safe(lines),  # noqa: S308 - SVG path data built from numbers only
    )  # numbers only


@register.filter
def percent(value, digits=1):
    return "—" if value is None else f"{value * 100:.{digits}f} %"


@register.filter
def number(value, digits=1):
    return "—" if value is None else f"{value:.{digits}f}"
