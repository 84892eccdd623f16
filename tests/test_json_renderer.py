"""The API's JSON renderer (console/renderers.py) writes what DRF's JSONRenderer writes,
byte for byte, for everything the API returns; only its speed differs."""

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils.functional import lazy
from rest_framework.renderers import JSONRenderer
from rest_framework.utils.serializer_helpers import ReturnDict, ReturnList

from console.renderers import FastJSONRenderer
from tests.conftest import token_client

lazy_text = lazy(lambda: "translated later", str)()

BODIES = [
    {"results": [], "next": None, "previous": None},
    {"name": "ünïcode-Modell", "emoji": "🚀", "quote": 'say "hi"\n\ttab', "html": "<script>&</script>"},
    # Valid JSON, but a line end in JavaScript: DRF escapes both (rest_framework/renderers.py).
    {"line": "a\u2028b\u2029c"},
    ReturnDict(
        {"id": 1, "tags": {"team": "risk"}, "aliases": ReturnList(["production"], serializer=None)}, serializer=None
    ),
    {"decimal": Decimal("12.50"), "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678")},
    # DRF's encoder: "Z" for UTC and microseconds cut to milliseconds; a date as ISO.
    {"at": datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC), "day": date(2026, 3, 4)},
    {"took": timedelta(seconds=90), "lazy": lazy_text, "set": {3}},
    {1: "int keys become strings", "nested": {"deep": [1, 2.5, True, False, None]}},
    [1, "two", {"three": 3}],
]


def test_the_fast_renderer_writes_drfs_bytes():
    drf, fast = JSONRenderer(), FastJSONRenderer()
    for body in BODIES:
        assert fast.render(body) == drf.render(body), body


def test_line_separators_are_escaped_so_the_body_is_safe_in_a_script():
    assert FastJSONRenderer().render({"line": "a\u2028b"}) == b'{"line":"a\\u2028b"}'


def test_no_data_is_an_empty_body_and_indentation_asked_for_is_given():
    fast = FastJSONRenderer()
    assert fast.render(None) == b""
    pretty = fast.render({"a": [1]}, "application/json; indent=2")
    assert pretty == JSONRenderer().render({"a": [1]}, "application/json; indent=2")
    assert b"\n" in pretty


@pytest.mark.django_db
def test_the_api_answers_through_it(viewer):
    response = token_client(viewer).get("/api/v1/versions/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {"next": None, "previous": None, "results": []}
