"""The navigation's count of requests waiting for the signed-in user's review.

A tag rather than a context processor: base.html asks for it only for users who may review,
so other pages and users pay no query for it."""

from django import template

from registry.promotions import selectors

register = template.Library()


@register.simple_tag(takes_context=True)
def waiting_for_review(context) -> int:
    user = context.get("user")
    if user is None or not user.is_authenticated:
        return 0
    return selectors.inbox_count(user)
