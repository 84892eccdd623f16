"""List rows rendered straight from ``values()``: what ModelVersionSerializer gives for each
version, without building a model instance and a DRF field per value.

A CI job polls the version search; field-by-field serialization and model instances were
about half of its CPU per request (bench/results/profile-version-search.md). The serializer
stays the reference (the schema, single objects, writes); ``tests/test_api_rows.py`` holds
these rows to its output for the same versions.
"""

from collections.abc import Iterable

from django.db.models import QuerySet
from rest_framework import serializers

from .serializers import ModelVersionSerializer, version_url

_FIELDS = tuple(ModelVersionSerializer.Meta.fields)  # the body's keys, in the serializer's order
_COMPUTED = {"model", "model_uri", "url"}  # made from the model's name and the version number
_DATETIMES = {"created_at", "updated_at"}
# What a row reads: the ordering fields (the cursor reads them from the last row), the model's
# name, and every stored field the serializer shows.
VERSION_VALUES = ("id", "model__name", *(f for f in _FIELDS if f not in _COMPUTED))
_DATETIME = serializers.DateTimeField()  # the serializer's own formatting (ISO 8601, "Z")


def version_values(queryset: QuerySet) -> QuerySet:
    return queryset.values(*VERSION_VALUES)


def version_rows(rows: Iterable[dict]) -> list[dict]:
    out = []
    for row in rows:
        name, number = row["model__name"], row["version"]
        computed = {"model": name, "model_uri": f"models:/{name}/{number}", "url": version_url(name, number)}
        for field in _DATETIMES:
            computed[field] = _DATETIME.to_representation(row[field])
        out.append({field: computed[field] if field in computed else row[field] for field in _FIELDS})
    return out
