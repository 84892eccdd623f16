"""Models the tests build once and keep between runs.

Building a SavedModel costs seconds of TensorFlow, and logging one to MLflow costs more (MLflow
loads it again in a subprocess to infer its requirements): the same seconds on every run, and
on every xdist worker when a fixture builds per worker. What gets built depends only on the
code that builds it and on the TensorFlow and MLflow versions, so those are the key: a changed
builder or an upgrade builds afresh. The folder lives in pytest's cache (.pytest_cache/d/built/,
emptied by `--cache-clear`; CI's second pass reuses its first pass's), or in the run's temp dir
when the cache plugin is off. Under xdist the first worker to ask builds while the others wait.
"""

import hashlib
import inspect
import json
import os
import shutil
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from filelock import FileLock

PACKAGES = ("tensorflow", "mlflow")


def _key(sources: tuple) -> str:
    digest = hashlib.sha256()
    for source in sources:
        digest.update(inspect.getsource(source).encode())
    providers = metadata.packages_distributions()  # tensorflow: tensorflow-cpu here, tensorflow elsewhere
    for package in PACKAGES:
        for dist in sorted(providers.get(package, ())):
            digest.update(f"{dist}=={metadata.version(dist)}".encode())
    return digest.hexdigest()[:16]


def _parent(config, tmp_path_factory) -> Path:
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("built"))
    base = tmp_path_factory.getbasetemp()  # a worker's is inside the run's shared one
    parent = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "built"
    parent.mkdir(exist_ok=True)
    return parent


def built_once(config, tmp_path_factory, name: str, build: Callable[[Path], object], *, sources: tuple):
    """(folder, result): the folder build(folder) filled and the JSON-able value it returned,
    from an earlier build whose sources (modules or functions) and package versions match, or
    built now. Tests may add to the folder (a run logged next to the template's) but must not
    change what was built."""
    parent = _parent(config, tmp_path_factory)
    folder = parent / f"{name}-{_key(sources)}"
    marker = folder / ".built.json"
    with FileLock(str(parent / f"{name}.lock")):
        if marker.exists():
            return folder, json.loads(marker.read_text())["result"]
        for old in parent.glob(f"{name}-*"):  # another key's, or a build that was interrupted
            shutil.rmtree(old, ignore_errors=True)
        folder.mkdir()
        result = build(folder)
        marker.write_text(json.dumps({"result": result}))  # last: a folder without it is incomplete
    return folder, result
