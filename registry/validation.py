"""Checks on names, tags and descriptions, with messages that say how to fix them."""

import re

from console.errors import ServiceError

from .mirror import RESERVED_TAG_PREFIX

NAME_MAX = 128
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_TAG_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./ -]*\Z")
TAG_KEY_MAX = 250
TAG_VALUE_MAX = 5000
TAGS_MAX = 100  # per request, and on one model or version
DESCRIPTION_MAX = 5000
_RUN_ID = re.compile(r"^[0-9a-f]{32}\Z")
# Page addresses under /models/ that a model name must not shadow.
RESERVED_NAMES = {"new", "sync"}


def model_name_problem(name) -> str | None:
    """What is wrong with ``name`` as a model name, as the end of a sentence that starts with
    the name's role ("Name …"), or None. The one rule for model names: creating a model and a
    ``models:/<name>/…`` source both check it.

    MLflow itself refuses only names with '/' or ':' and names a path would normalise
    (``_validate_model_name`` in mlflow/utils/validation.py). Modelgate asks more, because a
    name is also a segment of the console's and the API's URLs and a Kubernetes label value:
    letters, digits, '.', '_' and '-', starting with a letter or digit, at most NAME_MAX
    characters, and not the address of a page under /models/. Every name this allows, MLflow
    allows too.
    """
    if not isinstance(name, str) or not name.strip():
        return "is required"
    if len(name) > NAME_MAX:
        return f"is at most {NAME_MAX} characters (got {len(name)})"
    if not _NAME.match(name):
        return "may contain only letters, digits, '.', '_' and '-', and must start with a letter or digit"
    if name in RESERVED_NAMES:
        return f"may not be {name!r}, which is reserved for a page of the console; choose another name"
    return None


def clean_model_name(name) -> str:
    problem = model_name_problem(name)
    if problem:
        raise ServiceError(f"Name {problem}.", field="name")
    return name


def clean_description(value) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ServiceError("Description must be text.", field="description")
    if len(value) > DESCRIPTION_MAX:
        raise ServiceError(f"Description is at most {DESCRIPTION_MAX} characters.", field="description")
    return value


def clean_tags(tags, *, allow_delete: bool = False) -> dict:
    """A dict of tag key -> value; with allow_delete, a None value means "remove this tag"."""
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        raise ServiceError('Tags must be an object such as {"team": "search"}.', field="tags")
    if len(tags) > TAGS_MAX:
        raise ServiceError(f"At most {TAGS_MAX} tags per request (got {len(tags)}).", field="tags")
    cleaned: dict[str, str | None] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not key or len(key) > TAG_KEY_MAX or not _TAG_KEY.match(key):
            raise ServiceError(
                f"Tag key {str(key)[:60]!r} is invalid: use letters, digits, '_', '-', '.', '/' or spaces, "
                f"at most {TAG_KEY_MAX} characters.",
                field="tags",
            )
        if key.startswith(RESERVED_TAG_PREFIX):
            raise ServiceError(
                f"Tag keys starting with {RESERVED_TAG_PREFIX!r} are set by Modelgate itself.", field="tags"
            )
        if value is None and allow_delete:
            cleaned[key] = None
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ServiceError(f"Tag {key!r} must have a text value.", field="tags")
        value = str(value)
        if len(value) > TAG_VALUE_MAX:
            raise ServiceError(f"Tag {key!r} is longer than {TAG_VALUE_MAX} characters.", field="tags")
        cleaned[key] = value
    return cleaned


def check_tag_total(current: dict, changes: dict) -> None:
    """A model or version keeps at most TAGS_MAX tags of its own (Modelgate's are not counted)."""
    after = {k for k in current if not k.startswith(RESERVED_TAG_PREFIX)}
    after |= {k for k, v in changes.items() if v is not None}
    after -= {k for k, v in changes.items() if v is None}
    if len(after) > TAGS_MAX:
        raise ServiceError(
            f"At most {TAGS_MAX} tags on one model or version; this change would leave "
            f"{len(after)}. Remove some (set them to null) first.",
            field="tags",
        )


def clean_run_id(run_id) -> str:
    if run_id in (None, ""):
        return ""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ServiceError("run_id must be a 32-character hexadecimal MLflow run id.", field="run_id")
    return run_id
