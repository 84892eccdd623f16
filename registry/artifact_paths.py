"""Paths taken from a version's artifacts (its MLmodel file, the SavedModel directory the
deployer is told to fetch) must stay inside that version's own artifact location.

The source URI is checked at registration (registry/sources.py), but an MLmodel file is
written by whoever logged the model: ``saved_model_dir: ../../../outside/model`` or a
symlink ``tf2model -> /etc`` would otherwise make the inspection, the local export and the
Kubernetes init container read files from outside. So every such path is refused if it is
absolute, holds a ``..`` segment, a backslash or a control character, or (on a local
artifact store) resolves through a symlink to somewhere outside the artifact root.

Used at registration (a 400 naming the MLmodel field), by the sync (the version is marked
not servable), at export on the local backend, and, as a copy of the same rules, in the
init container's fetch script (deployer/manifests.py).
"""

import os
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

# MLmodel keys whose values are paths inside the model's artifacts (MLflow's flavors:
# tensorflow saved_model_dir, keras/pytorch/sklearn data, model_path, pickled_model, code,
# pyfunc's env files and artifacts).
PATH_KEYS = {
    "saved_model_dir",
    "data",
    "code",
    "model_path",
    "pickled_model",
    "model_data",
    "conda",
    "python_env",
    "virtualenv",
    "path",
    "artifacts",
    "env",
}
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


class ArtifactPathError(ValueError):
    """A path from the artifacts leaves the version's artifact location. ``field`` names it,
    e.g. ``MLmodel flavors.tensorflow.saved_model_dir``."""

    def __init__(self, field: str, value: str, why: str):
        super().__init__(
            f"{field} = {value[:200]!r} {why}; paths in a model's artifacts must stay inside "
            "the version's own artifact location."
        )
        self.field = field


def check_relative(rel: object, *, field: str) -> str:
    """The path as a clean relative POSIX path ("." for the root), or ArtifactPathError."""
    if not isinstance(rel, str):
        raise ArtifactPathError(field, repr(rel), "is not a path")
    if rel in ("", "."):
        return "."
    if _BAD_CHARS.search(rel):
        raise ArtifactPathError(field, rel, "contains a backslash or a control character")
    decoded = unquote(rel)
    if _SCHEME.match(rel) or rel.startswith("/") or decoded.startswith("/"):
        raise ArtifactPathError(field, rel, "is absolute")
    if any(part == ".." for form in (rel, decoded) for part in form.split("/")):
        raise ArtifactPathError(field, rel, "contains '..'")
    clean = str(PurePosixPath(rel))
    return clean


def _walk_paths(value: object, prefix: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield prefix, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk_paths(item, f"{prefix}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk_paths(item, f"{prefix}[{i}]")


def mlmodel_path_fields(mlmodel: dict) -> Iterator[tuple[str, str]]:
    """(field name, value) for every value in the MLmodel file that names a path."""
    flavors = mlmodel.get("flavors") if isinstance(mlmodel, dict) else None
    for flavor, conf in (flavors or {}).items():
        if not isinstance(conf, dict):
            continue
        for key, value in conf.items():
            if key in PATH_KEYS:
                yield from _walk_paths(value, f"MLmodel flavors.{flavor}.{key}")


def check_mlmodel(mlmodel: dict) -> None:
    """Raise ArtifactPathError for the first MLmodel path field that could leave the artifacts."""
    for field, value in mlmodel_path_fields(mlmodel):
        check_relative(value, field=field)


def local_path(uri: str) -> Path | None:
    """The directory a file: (or plain path) artifact URI names; None for remote stores."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if not parts.scheme and uri.startswith("/"):
        return Path(uri)
    return None


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def safe_subpath(root: Path, rel: str, *, field: str = "path") -> Path:
    """``root/rel``, refusing '..', absolute paths, and symlinks anywhere on the way, or inside
    the directory it names, that resolve outside ``root``."""
    rel = check_relative(rel, field=field)
    real_root = Path(os.path.realpath(root))
    candidate = Path(root) / rel
    real = Path(os.path.realpath(candidate))
    if not _inside(real, real_root):
        raise ArtifactPathError(field, rel, "resolves through a symlink to outside the artifacts")
    if real.is_dir():
        for dirpath, dirnames, filenames in os.walk(real):
            for name in dirnames + filenames:
                entry = Path(dirpath) / name
                if entry.is_symlink() and not _inside(Path(os.path.realpath(entry)), real_root):
                    shown = f"{rel}/{entry.relative_to(real)}" if rel != "." else str(entry.relative_to(real))
                    raise ArtifactPathError(field, shown, "is a symlink to outside the artifacts")
    return candidate
