"""labelSelector and fieldSelector query parameters, with the real server's syntax and its
400 for a field label the resource does not index."""

import re

from .status import ApiError

_SET_TERM = re.compile(r"^\s*(!?)\s*([A-Za-z0-9./_-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ_TERM = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")


def _terms(text: str) -> list[str]:
    """Split on commas outside parentheses: `a in (x,y),b=c` has two terms."""
    terms, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    return [t for t in terms + [current] if t.strip()]


def label_selector(text: str | None):
    """A predicate over a labels dict."""
    checks = []
    for term in _terms(text or ""):
        if match := _EQ_TERM.match(term):
            key, op, value = match.groups()
            checks.append(lambda labels, k=key, v=value, neg=(op == "!="): (labels.get(k) == v) != neg)
        elif (match := _SET_TERM.match(term)) and not (match.group(1) and match.group(3)):
            bang, key, op, values = match.groups()
            options = {v.strip() for v in (values or "").split(",") if v.strip()}
            if op == "in":
                checks.append(lambda labels, k=key, o=options: labels.get(k) in o)
            elif op == "notin":
                checks.append(lambda labels, k=key, o=options: labels.get(k) not in o)
            else:
                checks.append(lambda labels, k=key, neg=bool(bang): (k in labels) != neg)
        else:
            raise ApiError(400, f"unable to parse requirement: found '{term.strip()}', expected: valid selector")
    return lambda labels: all(check(labels or {}) for check in checks)


def field_selector(text: str | None, resource):
    """A predicate over an object. Only indexed fields may be selected, as on a real server."""
    checks = []
    for term in _terms(text or ""):
        match = re.match(r"^\s*([A-Za-z0-9.]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not match:
            raise ApiError(400, f"invalid selector: '{text}'; can't understand '{term}'")
        path, op, value = match.groups()
        if path not in ("metadata.name", "metadata.namespace") + resource.field_labels:
            raise ApiError(400, f"field label not supported: {path}")
        checks.append(lambda obj, p=path.split("."), v=value, neg=(op == "!="): (_text(obj, p) == v) != neg)
    return lambda obj: all(check(obj) for check in checks)


def _text(obj: dict, path: list[str]) -> str:
    for step in path:
        obj = obj.get(step) if isinstance(obj, dict) else None
    if isinstance(obj, dict) and path == ["source"]:  # events select source by component
        obj = obj.get("component")
    return "" if obj is None else str(obj)
