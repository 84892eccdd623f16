"""List rows rendered straight from ``values()``: what ModelVersionSerializer gives for each
version, without building a model instance and a DRF field per value.

A CI job polls the version search; field-by-field serialization and model instances were
about half of its CPU per request (bench/results/profile-version-search.md). The serializer
stays the reference (the schema, single objects, writes); ``tests/test_api_rows.py`` holds
these rows to its output for the same versions.
"""

from collections.abc import Iterable
from datetime import datetime, tzinfo

import orjson
from django.db.models import JSONField, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from registry.models import ModelVersion

from .serializers import ModelVersionSerializer, models_list_path, version_url

_FIELDS = tuple(ModelVersionSerializer.Meta.fields)  # the body's keys, in the serializer's order
_COMPUTED = {"model", "model_uri", "url"}  # made from the model's name and the version number
_DATETIMES = {"created_at", "updated_at"}
# What a row reads: the ordering fields (the cursor reads them from the last row), the model's
# name, and every stored field the serializer shows.
# JSON columns are read as their text and parsed by orjson: Django's JSONField parses each
# value with json.loads through its converters, about a twentieth of the request (profiled).
_JSON = tuple(f for f in _FIELDS if f not in _COMPUTED and isinstance(ModelVersion._meta.get_field(f), JSONField))
VERSION_VALUES = ("id", "model__name", *(f for f in _FIELDS if f not in _COMPUTED and f not in _JSON))


def version_values(queryset: QuerySet) -> QuerySet:
    return queryset.values(*VERSION_VALUES, **{f"{f}__text": Cast(f, output_field=TextField()) for f in _JSON})


def _iso(value: datetime | None, tz: tzinfo) -> str | None:
    """DRF's DateTimeField.to_representation with its defaults (fields.py: enforce_timezone,
    then ISO 8601 with "Z" for UTC), the current time zone looked up once per page, not per value."""
    if not value:
        return None
    text = value.astimezone(tz).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def version_rows(rows: Iterable[dict]) -> list[dict]:
    out = []
    tz, base = timezone.get_current_timezone(), models_list_path()
    for row in rows:
        name, number = row["model__name"], row["version"]
        computed = {"model": name, "model_uri": f"models:/{name}/{number}", "url": version_url(name, number, base)}
        for field in _DATETIMES:
            computed[field] = _iso(row[field], tz)
        for field in _JSON:
            text = row[f"{field}__text"]
            computed[field] = None if text is None else orjson.loads(text)
        out.append({field: computed[field] if field in computed else row[field] for field in _FIELDS})
    return out
