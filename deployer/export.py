"""Lay a registered version out as TF Serving expects: <base>/<model>/<version>/saved_model.pb
plus variables/.

Written atomically: the SavedModel is downloaded into a temporary directory beside the
target and renamed into place, so a model server polling the base path never sees half a
version. Exporting a version that is already there does nothing (safe to run twice).
"""

import os
import shutil
import tempfile
import time
from pathlib import Path

from registry import gateway
from registry.artifact_paths import ArtifactPathError, check_relative, safe_subpath
from registry.models import ModelVersion

SCRATCH_PREFIX = ".incoming-"
# A scratch directory without a process id (or whose id cannot be read) is left alone for this
# long: no export runs longer than a task may (deployer.tasks.HARD_LIMIT).
STALE_SCRATCH_SECONDS = 3700


class ExportError(Exception):
    """The version cannot be exported (permanent: retrying will not help)."""


def version_dir(base: Path, model: str, version: int) -> Path:
    return Path(base) / model / str(version)


def export_version(version: ModelVersion, base: Path) -> Path:
    """Export ``version``'s SavedModel under ``base``; return its directory."""
    if not version.servable or not version.savedmodel_path:
        raise ExportError(f"{version} has no SavedModel TF Serving can load: {version.serving_note or 'not inspected'}")
    try:  # checked at registration; checked again here, as the artifacts may have changed since
        check_relative(version.savedmodel_path, field="savedmodel_path")
    except ArtifactPathError as exc:
        raise ExportError(f"{version}: {exc}") from None
    target = version_dir(base, version.model.name, version.version)
    if (target / "saved_model.pb").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # The temporary directory sits beside the target so the final rename stays on one
    # file system (an atomic rename); its name starts with a dot, which TF Serving skips
    # because it is not an integer version.
    # The exporting process's id is in the name, so a later start can tell its own leftovers.
    scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{version.version}-{os.getpid()}-", dir=target.parent))
    try:
        try:
            downloaded = Path(
                gateway.download_model_version(
                    version.model.name, version.version, version.savedmodel_path, str(scratch / "download")
                )
            )
            safe_subpath(
                scratch / "download", str(downloaded.relative_to(scratch / "download")), field="savedmodel_path"
            )
        except (ArtifactPathError, ValueError) as exc:
            raise ExportError(f"{version}: {exc}") from None
        if not (downloaded / "saved_model.pb").is_file():
            raise ExportError(f"{version}: {version.savedmodel_path}/ holds no saved_model.pb")
        staged = scratch / "version"
        os.rename(downloaded, staged)
        try:
            os.rename(staged, target)
        except OSError:
            if not (target / "saved_model.pb").is_file():  # not a concurrent export that won
                raise
        return target
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def scratch_clean(root: Path) -> list[Path]:
    """Remove export scratch directories a killed worker left under ``root`` (at worker
    start): those of processes that no longer run, and any older than a task may run."""
    removed = []
    now = time.time()
    for scratch in Path(root).glob(f"*/models/*/{SCRATCH_PREFIX}*"):
        parts = scratch.name[len(SCRATCH_PREFIX) :].split("-")
        pid = int(parts[1]) if len(parts) >= 3 and parts[1].isdigit() else None
        try:
            stale = (pid is not None and not _alive(pid)) or now - scratch.stat().st_mtime > STALE_SCRATCH_SECONDS
        except OSError:
            continue
        if stale and scratch.is_dir():
            shutil.rmtree(scratch, ignore_errors=True)
            removed.append(scratch)
    return removed
