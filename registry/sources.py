"""Validation of a model version's ``source``: a pure function, table-tested.

MLflow's own CVEs about this field (CVE-2023-1177, CVE-2023-2356, CVE-2023-2780,
CVE-2024-1483, CVE-2024-3573, CVE-2025-11201) came from local paths, ``..`` hidden
in encodings, and fragments or parameters that one parser read and another did
not. So: only MLflow model URIs (``models:/``, ``runs:/``) or URIs under a
configured root; no ``..`` in any encoding; no ``#``, ``;`` or ``?``; nothing
the two sides could parse differently.
"""

import os
import re
from urllib.parse import unquote, urlsplit

from .validation import model_name_problem

MAX_LENGTH = 1000
_RUN_ID = re.compile(r"^[0-9a-f]{32}\Z")
_LOGGED_MODEL_ID = re.compile(r"^m-[0-9a-f]{32}\Z")
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,254}\Z")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class SourceError(ValueError):
    pass


def _decodings(value: str):
    """The value and every further percent-decoding of it (double encoding included)."""
    seen = value
    yield seen
    for _ in range(5):
        decoded = unquote(seen)
        if decoded == seen:
            return
        seen = decoded
        yield seen


def _check_characters(source: str) -> None:
    for form in _decodings(source):
        if any(ch in form for ch in "\x00\r\n\t\\"):
            raise SourceError("Source contains a control character or a backslash.")
        if any(seg == ".." for seg in re.split(r"[/]", form)):
            raise SourceError("Source may not contain '..' path segments, in any encoding.")
        if form != source and any(ch in form for ch in "#;?"):
            raise SourceError("Source hides '#', ';' or '?' behind percent-encoding.")
    if any(ch in source for ch in "#;?"):
        raise SourceError("Source may not contain '#', ';' or '?': fragments, parameters and queries are refused.")
    if "%" in source and unquote(source) != source and re.search(r"%(2[eEfF]|5[cC])", source):
        raise SourceError("Source may not percent-encode '.', '/' or '\\'.")
    if source != source.strip() or " " in source.split(":", 1)[0]:
        raise SourceError("Source has leading or trailing spaces.")


def _check_model_name(name: str) -> None:
    problem = model_name_problem(name)
    if problem:
        raise SourceError(f"The model name in a models: URI {problem}.")


def _validate_models_uri(path: str, netloc: str) -> None:
    if netloc:
        raise SourceError("models: URIs take no host or profile; use models:/<name>/<version>.")
    rest = path.lstrip("/")
    if _LOGGED_MODEL_ID.match(rest):
        return
    if "@" in rest:
        name, alias = rest.rsplit("@", 1)
        if _ALIAS.match(alias):
            _check_model_name(name)
            return
    elif "/" in rest:
        name, version = rest.rsplit("/", 1)
        if version.isdigit() and int(version) > 0:
            _check_model_name(name)
            return
    raise SourceError("A models: URI must be models:/<name>/<version>, models:/<name>@<alias> or models:/m-<id>.")


def _validate_runs_uri(path: str, netloc: str) -> None:
    if netloc:
        raise SourceError("runs: URIs take no host; use runs:/<run_id>/<artifact path>.")
    parts = path.lstrip("/").split("/", 1)
    if not _RUN_ID.match(parts[0]):
        raise SourceError("A runs: URI must start with a 32-character hexadecimal run id: runs:/<run_id>/<path>.")
    if len(parts) < 2 or not parts[1].strip("/"):
        raise SourceError("A runs: URI must name the model's artifact path: runs:/<run_id>/model.")


def _normalise_root(root: str):
    parts = urlsplit(root if _SCHEME.match(root) else "file://" + os.path.abspath(root))
    path = parts.path.rstrip("/") or "/"
    if parts.scheme == "file":
        path = os.path.realpath(path)
    return parts.scheme.lower(), parts.netloc.lower(), path


def _within(path: str, root_path: str) -> bool:
    return path == root_path or path.startswith(root_path.rstrip("/") + "/")


def validate_source(source, *, allowed_roots: list[str]) -> str:
    """Return the source as it will be stored, or raise SourceError saying why it is refused."""
    if not isinstance(source, str) or not source.strip():
        raise SourceError("Source is required: an MLflow model URI such as models:/m-<id> or runs:/<run_id>/model.")
    if len(source) > MAX_LENGTH:
        raise SourceError(f"Source is longer than {MAX_LENGTH} characters.")
    _check_characters(source)

    if not _SCHEME.match(source):
        if not source.startswith("/"):
            raise SourceError(
                "Relative paths are refused; use an MLflow model URI or an absolute path under an allowed root."
            )
        source = "file://" + source
    parts = urlsplit(source)
    scheme = parts.scheme.lower()
    if scheme == "models":
        _validate_models_uri(parts.path, parts.netloc)
        return source
    if scheme == "runs":
        _validate_runs_uri(parts.path, parts.netloc)
        return source

    roots = [_normalise_root(r) for r in allowed_roots]
    allowed_schemes = sorted({"models", "runs"} | {r[0] for r in roots})
    if scheme not in {r[0] for r in roots}:
        raise SourceError(f"Scheme {scheme!r} is not allowed; use one of: {', '.join(allowed_schemes)}.")
    if parts.username or parts.password:
        raise SourceError("Source may not carry credentials.")
    netloc = parts.netloc.lower()
    path = unquote(parts.path).rstrip("/") or "/"
    if scheme == "file":
        if netloc not in ("", "localhost"):
            raise SourceError("file: URIs must be local (file:///absolute/path).")
        netloc = ""
        path = os.path.realpath(path)  # a symlink out of the root does not get in
    for root_scheme, root_netloc, root_path in roots:
        if root_scheme == scheme and root_netloc == netloc and _within(path, root_path):
            return source
    shown = ", ".join(allowed_roots) or "(none configured)"
    raise SourceError(
        f"Source is outside the allowed roots ({shown}); set MODELGATE_ALLOWED_SOURCE_ROOTS to allow more."
    )
