"""The API's JSON renderer: DRF's JSONRenderer, with orjson doing the encoding.

Encoding was about a tenth of a 50-row version search's CPU with the standard library's
encoder (bench/results/profile-version-search.md); orjson writes the same document several
times faster. The output keeps DRF's conventions, held by tests/test_json_renderer.py:
compact, UTF-8 without escaping, U+2028 and U+2029 escaped so the body is safe inside a
script, and DRF's encoder for what orjson does not know (Decimal, lazy strings, querysets,
timedelta…). A client that asks for indentation (``Accept: application/json; indent=2``)
gets DRF's own renderer.
"""

from typing import Any

import orjson
from rest_framework.renderers import JSONRenderer
from rest_framework.utils.encoders import JSONEncoder

_drf = JSONEncoder()
# Datetimes go through DRF's encoder ("Z" for UTC, microseconds cut to milliseconds), not
# orjson's own format. Keys that are not strings are written as strings, as json.dumps does.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


def _default(value: Any) -> Any:
    return _drf.default(value)


class FastJSONRenderer(JSONRenderer):
    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        if data is None:
            return b""
        if self.get_indent(accepted_media_type or "", renderer_context or {}):
            return super().render(data, accepted_media_type, renderer_context)
        body = orjson.dumps(data, default=_default, option=_OPTIONS)
        # As DRF does (renderers.py): these two are valid JSON but end a line in JavaScript.
        return body.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
