"""States that carry their look: a choice set whose members each name a badge colour.

    class State(BadgeChoices):
        LIVE = "live", "ok", "Live"          # value, colour, label: a new state is one line

``{% state_badge obj.state "State" %}`` (console_extras) renders any of them through
``templates/components/badge.html``, so no template spells out a state→colour map.
"""

from functools import cache

from django.core.exceptions import ImproperlyConfigured
from django.db import models

# The badge classes static/css/modelgate.css defines (.badge-ok, …).
COLOURS = frozenset({"ok", "warning", "error", "blue", "muted"})


class BadgeChoices(models.TextChoices):
    """TextChoices whose members are ``value, colour, label``; ``member.colour`` is one of COLOURS."""

    colour: str

    def __new__(cls, value: str, colour: str):
        if colour not in COLOURS:
            raise ValueError(f"{cls.__name__}: {value!r} has colour {colour!r}, not one of {sorted(COLOURS)}.")
        member = str.__new__(cls, value)
        member._value_ = value
        member.colour = colour
        return member

    @property
    def badge_class(self) -> str:
        return f"badge-{self.colour}"


def badge_choice_sets() -> dict[str, type[BadgeChoices]]:
    """Every BadgeChoices subclass by class name (the name templates pass to ``state_badge``)."""
    found: dict[str, type[BadgeChoices]] = {}
    pending = list(BadgeChoices.__subclasses__())
    while pending:
        cls = pending.pop()
        if found.setdefault(cls.__name__, cls) is not cls:
            raise ImproperlyConfigured(f"Two badge choice sets are named {cls.__name__}.")
        pending.extend(cls.__subclasses__())
    return found


@cache
def badge_choice_set(name: str) -> type[BadgeChoices]:
    try:
        return badge_choice_sets()[name]
    except KeyError:
        raise LookupError(f"No badge choice set is named {name!r}.") from None
