"""The API's JSON parser: DRF's, with limits on nesting and on numbers (console.api has the
error format; this module is imported by DRF's settings, so it imports no DRF views)."""

import json
import math
import re

from django.conf import settings
from rest_framework import exceptions, parsers

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")


def json_depth_exceeds(text: str, limit: int) -> bool:
    """Whether arrays/objects nest deeper than ``limit`` (strings are skipped, so a "[" inside
    one does not count). Checked before parsing: Python's parser would recurse until it fails."""
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        depth += 1 if match.group() in "[{" else -1
        if depth > limit:
            return True
    return False


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"Number {text[:40]} is out of range.")
    return value


def _no_constants(name: str):
    raise ValueError(f"{name} is not a number JSON allows.")


class JSONParser(parsers.JSONParser):
    """DRF's parser, but: nesting deeper than MAX_JSON_DEPTH is a 400 (not a RecursionError),
    and NaN, Infinity and numbers that overflow to infinity (1e999) are refused."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        raw = stream.read() if stream is not None else b""
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            raise exceptions.ParseError(f"JSON parse error - the body is not {encoding} text.") from None
        if json_depth_exceeds(text, settings.MAX_JSON_DEPTH):
            raise exceptions.ParseError(f"JSON parse error - nested deeper than {settings.MAX_JSON_DEPTH} levels.")
        try:
            return json.loads(text, parse_float=_finite, parse_constant=_no_constants)
        except (ValueError, RecursionError) as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
