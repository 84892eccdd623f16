"""Lay a registered version out as TF Serving expects: <base>/<model>/<version>/saved_model.pb
plus variables/.

Written atomically: the SavedModel is downloaded into a temporary directory beside the
target and renamed into place, so a model server polling the base path never sees half a
version. Exporting a version that is already there does nothing (safe to run twice).
"""

import os
import shutil
import tempfile
from pathlib import Path

from registry import gateway
from registry.artifact_paths import ArtifactPathError, check_relative, safe_subpath
from registry.models import ModelVersion


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
    scratch = Path(tempfile.mkdtemp(prefix=f".incoming-{version.version}-", dir=target.parent))
    try:
        try:
            downloaded = Path(gateway.download_model_version(version.model.name, version.version,
                                                             version.savedmodel_path, str(scratch / "download")))
            safe_subpath(scratch / "download", str(downloaded.relative_to(scratch / "download")),
                         field="savedmodel_path")
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
