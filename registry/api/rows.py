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

from .serializers import version_url

# What a row reads: the ordering fields (the cursor reads them from the last row) and each
# field the serializer shows.
VERSION_VALUES = (
    "id",
    "model__name",
    "version",
    "description",
    "tags",
    "aliases",
    "source",
    "run_id",
    "status",
    "status_message",
    "creator",
    "created_at",
    "updated_at",
    "flavors",
    "signature",
    "servable",
    "serving_note",
    "keras_archive_path",
    "conversion_state",
    "conversion_detail",
)
_DATETIME = serializers.DateTimeField()  # the serializer's own formatting (ISO 8601, "Z")


def version_values(queryset: QuerySet) -> QuerySet:
    return queryset.values(*VERSION_VALUES)


def version_rows(rows: Iterable[dict]) -> list[dict]:
    out = []
    for row in rows:
        name, number = row["model__name"], row["version"]
        out.append(
            {
                "model": name,
                "version": number,
                "model_uri": f"models:/{name}/{number}",
                "description": row["description"],
                "tags": row["tags"],
                "aliases": row["aliases"],
                "source": row["source"],
                "run_id": row["run_id"],
                "status": row["status"],
                "status_message": row["status_message"],
                "creator": row["creator"],
                "created_at": _DATETIME.to_representation(row["created_at"]),
                "updated_at": _DATETIME.to_representation(row["updated_at"]),
                "flavors": row["flavors"],
                "signature": row["signature"],
                "servable": row["servable"],
                "serving_note": row["serving_note"],
                "keras_archive_path": row["keras_archive_path"],
                "conversion_state": row["conversion_state"],
                "conversion_detail": row["conversion_detail"],
                "url": version_url(name, number),
            }
        )
    return out
