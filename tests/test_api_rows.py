"""The version lists render rows from values() with a plain function (registry/api/rows.py);
the serializer stays the reference: for the same versions, both give the same bodies."""

import json
from datetime import UTC, datetime

import pytest

from registry.api.rows import version_rows, version_values
from registry.api.serializers import ModelVersionSerializer
from registry.models import ModelVersion, RegisteredModel

pytestmark = pytest.mark.django_db


def _versions():
    """Versions that differ in every way a row can: empty and full fields, nulls, odd names."""
    made = []
    for name in ("iris", "fraud.detector_v2-eu", "ünïcode-Modell"):
        model = RegisteredModel.objects.create(
            name=name, created_at=datetime(2026, 1, 1, tzinfo=UTC), updated_at=datetime(2026, 1, 2, tzinfo=UTC)
        )
        made.append(
            ModelVersion.objects.create(
                model=model,
                version=1,
                source=f"models:/m-0123abcd/{name}",
                created_at=datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC),
                updated_at=datetime(2026, 3, 4, 5, 6, 8, tzinfo=UTC),
            )
        )
        made.append(
            ModelVersion.objects.create(
                model=model,
                version=12,
                description='Retrained on March data.\nSecond line, "quoted" & <tagged>.',
                tags={"team": "risk", "empty": "", "nested.key": "ü"},
                aliases=["production", "champion"],
                source="runs:/0123456789abcdef/model",
                run_id="0123456789abcdef",
                status=ModelVersion.READY,
                status_message="",
                creator="eli-engineer",
                created_at=datetime(2026, 3, 5, tzinfo=UTC),
                updated_at=datetime(2026, 3, 5, 0, 0, 1, tzinfo=UTC),
                flavors=["python_function", "tensorflow"],
                signature={"inputs": [{"name": "features", "dtype": "float32", "shape": [-1, 4]}], "origin": "MLmodel"},
                servable=True,
                serving_note="",
                keras_archive_path="model/data/model.keras",
                conversion_state="done",
                conversion_detail="converted",
            )
        )
    return made


def test_the_row_renderer_gives_the_serializers_body_for_every_version():
    _versions()
    queryset = ModelVersion.objects.select_related("model").order_by("-created_at", "-id")

    expected = ModelVersionSerializer(queryset, many=True).data
    rendered = version_rows(version_values(queryset))

    assert len(rendered) == 6
    for mine, reference in zip(rendered, expected, strict=True):
        assert list(mine) == list(reference)  # the same keys, in the same order
        assert mine == dict(reference)
    # And the same JSON once encoded, as a client sees it.
    assert json.dumps(rendered) == json.dumps([dict(r) for r in expected])


@pytest.mark.parametrize("path", ["/api/v1/versions/", "/api/v1/models/iris/versions/"])
def test_the_version_lists_answer_the_serializers_bodies(api, viewer, path):
    _versions()
    queryset = ModelVersion.objects.select_related("model").order_by("-created_at", "-id")
    if "/models/iris/" in path:
        queryset = queryset.filter(model__name="iris").order_by("-version")

    body = api(viewer).get(path).json()

    assert body["results"] == json.loads(json.dumps(ModelVersionSerializer(queryset, many=True).data))


def test_the_cursor_still_pages_through_value_rows(api, viewer):
    _versions()
    client = api(viewer)

    first = client.get("/api/v1/versions/?page_size=4").json()
    second = client.get(first["next"]).json()

    names = [(r["model"], r["version"]) for r in first["results"] + second["results"]]
    assert len(names) == len(set(names)) == 6 and second["next"] is None
