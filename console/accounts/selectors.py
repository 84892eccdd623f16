"""Reads of accounts, shared by the pages and the API."""

from django.db.models import QuerySet

from .models import ApiToken


def token_list(user) -> QuerySet[ApiToken]:
    """The user's own tokens (each user manages only theirs)."""
    return ApiToken.objects.filter(user=user)


def role_names(user) -> list[str]:
    return sorted(user.groups.values_list("name", flat=True))
