"""The only module that talks to MLflow.

Everything else calls these functions and sees three kinds of failure:
``MlflowNotFound`` / ``MlflowConflict`` / ``MlflowRejected`` (permanent: the request
is wrong) and ``MlflowUnavailable`` (worth a retry: MLflow is down or slow).
"""

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import mlflow
import yaml
from django.conf import settings
from mlflow import MlflowClient, artifacts
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException
from mlflow.protos import databricks_pb2
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from console import outages

from .artifact_paths import check_mlmodel, check_relative, local_path, safe_subpath
from .mirror import ms_to_datetime
from .savedmodel import (
    CONVERTED_DIR,
    Inspection,
    keras_archive_candidate,
    keras_archive_note,
    savedmodel_candidate,
    signature_from_mlmodel,
    signature_from_savedmodel_proto,
)

log = logging.getLogger(__name__)

PAGE = 1000


class MlflowError(Exception):
    pass


class MlflowNotFound(MlflowError):
    pass


class MlflowConflict(MlflowError):
    pass


class MlflowRejected(MlflowError):
    pass


class MlflowUnavailable(MlflowError):
    outage_dependency = "mlflow"  # console.outages: answered 503 with Retry-After


_NOT_FOUND = {
    databricks_pb2.ErrorCode.Name(databricks_pb2.RESOURCE_DOES_NOT_EXIST),
    databricks_pb2.ErrorCode.Name(databricks_pb2.ENDPOINT_NOT_FOUND),
}
_CONFLICT = {databricks_pb2.ErrorCode.Name(databricks_pb2.RESOURCE_ALREADY_EXISTS)}
_REJECTED = {
    databricks_pb2.ErrorCode.Name(c)
    for c in (
        databricks_pb2.INVALID_PARAMETER_VALUE,
        databricks_pb2.BAD_REQUEST,
        databricks_pb2.INVALID_STATE,
        databricks_pb2.PERMISSION_DENIED,
        databricks_pb2.UNAUTHENTICATED,
    )
}


@contextlib.contextmanager
def _translated():
    """MLflow's errors as the four kinds above; an unreachable MLflow is logged once per
    outage (console.outages), not once per call."""
    try:
        with _translated_errors():
            yield
    except MlflowUnavailable as exc:
        outages.mark_down(outages.MLFLOW, exc)
        raise
    outages.mark_up(outages.MLFLOW)


@contextlib.contextmanager
def _translated_errors():
    try:
        yield
    except MlflowException as exc:
        message = exc.message if hasattr(exc, "message") else str(exc)
        if exc.error_code in _NOT_FOUND:
            raise MlflowNotFound(message) from exc
        if exc.error_code in _CONFLICT:
            raise MlflowConflict(message) from exc
        if exc.error_code in _REJECTED:
            raise MlflowRejected(message) from exc
        raise MlflowUnavailable(f"MLflow error: {message}") from exc
    except (OSError, ConnectionError, TimeoutError) as exc:
        raise MlflowUnavailable(f"MLflow is unreachable: {exc}") from exc
    except Exception as exc:  # requests and SQLAlchemy errors: the store is down or busy
        if type(exc).__module__.split(".")[0] in ("requests", "urllib3", "sqlalchemy"):
            raise MlflowUnavailable(f"MLflow is unreachable: {exc}") from exc
        raise


def ping() -> None:
    """The cheapest registry call: MLflow answers (readiness)."""
    with _translated():
        client().search_registered_models(max_results=1)


def client() -> MlflowClient:
    # MlflowClient caches its stores per URI, so building one per call is cheap and
    # lets tests point settings at a fresh store. MLflow's registry store also looks
    # up logged models through the *global* tracking URI, so keep that in step.
    if mlflow.get_tracking_uri() != settings.MLFLOW_TRACKING_URI:
        mlflow.set_tracking_uri(settings.MLFLOW_TRACKING_URI)
    return MlflowClient(tracking_uri=settings.MLFLOW_TRACKING_URI, registry_uri=settings.MLFLOW_REGISTRY_URI)


# --- registered models ----------------------------------------------------


def create_registered_model(name: str, *, description: str = "", tags: dict | None = None) -> RegisteredModel:
    with _translated():
        return client().create_registered_model(name, tags=tags or None, description=description or None)


def get_registered_model(name: str) -> RegisteredModel:
    with _translated():
        return client().get_registered_model(name)


def delete_registered_model(name: str) -> None:
    with _translated():
        client().delete_registered_model(name)


def update_registered_model(name: str, *, description: str) -> RegisteredModel:
    with _translated():
        return client().update_registered_model(name, description=description)


def set_registered_model_tag(name: str, key: str, value: str) -> None:
    with _translated():
        client().set_registered_model_tag(name, key, value)


def delete_registered_model_tag(name: str, key: str) -> None:
    with _translated():
        client().delete_registered_model_tag(name, key)


def iter_registered_models() -> Iterator[RegisteredModel]:
    token = None
    with _translated():
        while True:
            page = client().search_registered_models(max_results=PAGE, page_token=token)
            yield from page
            token = page.token
            if not token:
                return


# --- versions -------------------------------------------------------------


def create_model_version(
    name: str, *, source: str, run_id: str | None = None, description: str = "", tags: dict | None = None
) -> ModelVersion:
    # A logged model (MLflow 3) is named by its source models:/m-<id>; an MLflow server
    # refuses that source unless the model_id is sent as well.
    logged = re.fullmatch(r"models:/(m-[0-9a-f]+)/?", source)
    model_id = logged.group(1) if logged else None
    with _translated():
        return client().create_model_version(
            name,
            source,
            run_id=run_id or None,
            tags=tags or None,
            description=description or None,
            model_id=model_id,
        )


def get_model_version(name: str, version: int) -> ModelVersion:
    with _translated():
        return client().get_model_version(name, str(version))


def delete_model_version(name: str, version: int) -> None:
    with _translated():
        client().delete_model_version(name, str(version))


def update_model_version(name: str, version: int, *, description: str) -> ModelVersion:
    with _translated():
        return client().update_model_version(name, str(version), description=description)


def set_model_version_tag(name: str, version: int, key: str, value: str) -> None:
    with _translated():
        client().set_model_version_tag(name, str(version), key, value)


def delete_model_version_tag(name: str, version: int, key: str) -> None:
    with _translated():
        client().delete_model_version_tag(name, str(version), key)


def iter_model_versions(filter_string: str | None = None) -> Iterator[ModelVersion]:
    token = None
    with _translated():
        while True:
            page = client().search_model_versions(filter_string=filter_string, max_results=PAGE * 10, page_token=token)
            yield from page
            token = page.token
            if not token:
                return


def name_filter(name: str) -> str | None:
    """An MLflow search filter matching exactly this model name, or None when none can be written.

    MLflow's filter parser has no escapes: it strips the outer quotes and keeps the rest
    (mlflow/utils/search_utils.py ``_strip_quotes``), so ``'o''brien'`` and ``'o\\'brien'`` match
    nothing. A name is quoted with the quote it does not contain; a name with both quotes or
    a backslash gets no filter, and the caller keeps only its own versions.
    """
    if "\\" in name:
        return None
    if "'" not in name:
        return f"name = '{name}'"
    if '"' not in name:
        return f'name = "{name}"'
    return None


def iter_versions_of_model(name: str) -> Iterator[ModelVersion]:
    return (mv for mv in iter_model_versions(name_filter(name)) if mv.name == name)


# --- runs -----------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    name: str
    experiment_id: str
    status: str
    user: str
    start_time: int | None
    end_time: int | None
    metrics: dict
    params: dict

    @property
    def started(self):
        return ms_to_datetime(self.start_time) if self.start_time else None

    @property
    def duration(self) -> str:
        if not (self.start_time and self.end_time):
            return ""
        seconds = max(0, (self.end_time - self.start_time) // 1000)
        return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def get_run(run_id: str) -> RunSummary:
    with _translated():
        run = client().get_run(run_id)
    tags = run.data.tags
    return RunSummary(
        run_id=run.info.run_id,
        name=run.info.run_name or tags.get("mlflow.runName", ""),
        experiment_id=run.info.experiment_id,
        status=run.info.status,
        user=tags.get("mlflow.user", "") or (run.info.user_id or ""),
        start_time=run.info.start_time,
        end_time=run.info.end_time,
        metrics=dict(sorted(run.data.metrics.items())),
        params=dict(sorted(run.data.params.items())),
    )


# --- artifacts: what a version holds ---------------------------------------


def _artifact_names(uri: str) -> set[str]:
    return {
        os.path.basename(f.path.rstrip("/"))
        for f in artifacts.list_artifacts(artifact_uri=uri, tracking_uri=settings.MLFLOW_TRACKING_URI)
    }


def _read_artifact(uri: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp, tracking_uri=settings.MLFLOW_TRACKING_URI)
        with open(path, "rb") as fh:
            return fh.read()


def check_artifact_paths(base: str, subdir: str = ".", *, field: str = "artifacts") -> None:
    """Raise ArtifactPathError if ``subdir`` could leave the artifact location ``base``: '..',
    absolute, or (on a local store) a symlink out of it anywhere in the artifacts."""
    check_relative(subdir, field=field)
    root = local_path(base)
    if root is not None and root.exists():
        safe_subpath(root, ".", field="artifact path")
        safe_subpath(root, subdir, field=field)


def inspect_model_version(name: str, version: int) -> Inspection:
    """Read the version's MLmodel file (and, if needed, its saved_model.pb) from MLflow.

    Raises ArtifactPathError if a path in the artifacts leaves them (registry/artifact_paths.py).
    """
    with _translated():
        base = client().get_model_version_download_uri(name, str(version))
    return inspect_artifacts(base)


def inspect_artifacts(base: str, root: set[str] | None = None) -> Inspection:
    """What the model at artifact location ``base`` holds (``root``: the names at its top,
    when the caller has listed them already). Raises ArtifactPathError as inspect_model_version."""
    base = base.rstrip("/")
    with _translated():
        check_artifact_paths(base)
        root = _artifact_names(base) if root is None else root
        if "MLmodel" not in root:
            if "saved_model.pb" in root:
                signature = signature_from_savedmodel_proto(_read_artifact(f"{base}/saved_model.pb"))
                return Inspection(
                    flavors=["savedmodel"],
                    signature=signature,
                    savedmodel_path=".",
                    servable="variables" in root,
                    note="" if "variables" in root else "saved_model.pb has no variables/ beside it.",
                )
            return Inspection(note="Neither an MLmodel file nor a saved_model.pb was found in the artifacts.")
        mlmodel = yaml.safe_load(_read_artifact(f"{base}/MLmodel")) or {}
        if not isinstance(mlmodel, dict) or not isinstance(mlmodel.get("flavors") or {}, dict):
            return Inspection(note="The MLmodel file is not a mapping with flavors.")
        check_mlmodel(mlmodel)
        flavors = mlmodel.get("flavors") or {}
        flavor_names = sorted(flavors)
        subdir, why_not = savedmodel_candidate(flavors)
        signature = signature_from_mlmodel(mlmodel.get("signature"))
        if subdir is not None:
            check_artifact_paths(base, subdir, field="MLmodel SavedModel directory")
        if subdir is not None and "saved_model.pb" in _artifact_names(f"{base}/{subdir}"):
            if signature is None:
                signature = signature_from_savedmodel_proto(_read_artifact(f"{base}/{subdir}/saved_model.pb"))
            return Inspection(flavors=flavor_names, signature=signature, savedmodel_path=subdir, servable=True)
        archive = keras_archive_candidate(flavors)
        if archive is not None:
            folder, _, file_name = archive.rpartition("/")
            archive = archive if file_name in _artifact_names(f"{base}/{folder}" if folder else base) else None
        if CONVERTED_DIR in root and "saved_model.pb" in _artifact_names(f"{base}/{CONVERTED_DIR}"):
            # TF Serving reads the SavedModel's own signature, not the one MLflow recorded.
            return Inspection(
                flavors=flavor_names,
                savedmodel_path=CONVERTED_DIR,
                servable=True,
                signature=signature_from_savedmodel_proto(_read_artifact(f"{base}/{CONVERTED_DIR}/saved_model.pb"))
                or signature,
                keras_archive=archive or "",
                note=f"Serves {CONVERTED_DIR}/, converted by Modelgate from the Keras 3 archive "
                f"at {archive or 'its .keras file'}.",
            )
        if archive is not None:
            return Inspection(
                flavors=flavor_names, signature=signature, keras_archive=archive, note=keras_archive_note(archive)
            )
        if subdir is None:
            return Inspection(flavors=flavor_names, signature=signature, note=why_not)
        return Inspection(
            flavors=flavor_names,
            signature=signature,
            note=f"The flavor points at {subdir}/ but it holds no saved_model.pb.",
        )


def resolve_alias_source(source: str) -> str:
    """``models:/<name>@<alias>`` -> ``models:/<name>/<version>``, the version the alias names now.

    MLflow's registry cannot create a version from an alias URI (its store parses the part
    after the name as a version number), and an alias moves, so the version is pinned here.
    Other sources are returned unchanged.
    """
    scheme, _, rest = source.partition(":/")
    rest = rest.lstrip("/")
    if scheme != "models" or "@" not in rest:
        return source
    name, alias = rest.rsplit("@", 1)
    with _translated():
        version = client().get_model_version_by_alias(name, alias).version
    return f"models:/{name}/{version}"


@dataclass(frozen=True)
class SourceFacts:
    """What registration learns of an MLflow model URI before it creates anything."""

    run_id: str  # the training run behind it ("" if none is recorded)
    base: str  # the artifact location its files are read from
    names: set[str] | None = None  # the names at the top of it, when they were listed


def _joined(base: str, path: str) -> str:
    return "/".join(part for part in (base.rstrip("/"), path.strip("/")) if part)


def _logged_model_of_run(experiment_id: str, run_id: str, name: str):
    """The model named ``name`` that run ``run_id`` logged, or None (as MLflow resolves it)."""
    if "'" in name or "\\" in name:
        return None  # not a name MLflow's filter can hold, so no logged model has it
    token = None
    while True:
        page = client().search_logged_models(
            experiment_ids=[experiment_id], filter_string=f"name = '{name}'", page_token=token
        )
        found = next((model for model in page if model.source_run_id == run_id), None)
        if found is not None or not page.token:
            return found
        token = page.token


def source_facts(source: str) -> SourceFacts:
    """Raise MlflowNotFound unless an MLflow model URI points at something that exists; return
    its run and the artifact location the version's files will be read from.

    MLflow accepts a dangling models:/ or runs:/ source and fails only when the version is
    loaded; Modelgate refuses it at registration instead, and keeps the lineage to the run.
    A runs:/ source costs one get_run and one listing: the run's artifact location is read
    from the run itself (MLflow's runs:/ resolution would fetch the run again per call).
    """
    scheme, _, rest = source.partition(":/")
    rest = rest.lstrip("/")
    with _translated():
        if scheme == "runs":
            run_part, _, path = rest.partition("/")
            run = client().get_run(run_part)
            base = _joined(run.info.artifact_uri, path)
            names = _artifact_names(base)
            if not names and path:
                # MLflow 3 keeps a model logged in a run as a logged model of its own, which a
                # runs:/<run>/<name>/… URI also names (MLflow's RunsArtifactRepository).
                name, _, below = path.strip("/").partition("/")
                logged = _logged_model_of_run(run.info.experiment_id, run.info.run_id, name)
                if logged is not None:
                    base = _joined(logged.artifact_location, below)
                    names = _artifact_names(base)
            if not names:
                raise MlflowNotFound(f"run {run.info.run_id} has no artifacts at {path!r}")
            return SourceFacts(run_id=run.info.run_id, base=base, names=names)
        if scheme == "models" and rest.startswith("m-") and "/" not in rest:
            logged = client().get_logged_model(rest)
            return SourceFacts(run_id=logged.source_run_id or "", base=logged.artifact_location)
        if scheme == "models" and "@" in rest:
            name, alias = rest.rsplit("@", 1)
            mv = client().get_model_version_by_alias(name, alias)
            return SourceFacts(run_id=mv.run_id or "", base=client().get_model_version_download_uri(name, mv.version))
        if scheme == "models":
            name, version = rest.rsplit("/", 1)
            run_id = client().get_model_version(name, version).run_id or ""
            return SourceFacts(run_id=run_id, base=client().get_model_version_download_uri(name, version))
    return SourceFacts(run_id="", base=source)


# --- aliases --------------------------------------------------------------


def set_alias(name: str, alias: str, version: int) -> None:
    with _translated():
        client().set_registered_model_alias(name, alias, str(version))


def delete_alias(name: str, alias: str) -> None:
    with _translated():
        client().delete_registered_model_alias(name, alias)


def download_model_version(name: str, version: int, subdir: str, dst: str) -> str:
    """Download one directory of a version's artifacts (e.g. its SavedModel) into ``dst``;
    return the local path of that directory."""
    with _translated():
        base = client().get_model_version_download_uri(name, str(version)).rstrip("/")
        check_artifact_paths(base, subdir, field="savedmodel_path")
        uri = base if subdir in ("", ".") else f"{base}/{subdir.strip('/')}"
        return artifacts.download_artifacts(artifact_uri=uri, dst_path=dst, tracking_uri=settings.MLFLOW_TRACKING_URI)


def log_model_version_artifacts(name: str, version: int, local_dir: str, artifact_path: str) -> str:
    """Log a local directory into the version's own artifact location, beside what is there
    (under ``artifact_path``); return the URI it was logged to. Logging the same files again
    overwrites them, so a retried conversion leaves one copy."""
    with _translated():
        base = client().get_model_version_download_uri(name, str(version)).rstrip("/")
        get_artifact_repository(base).log_artifacts(local_dir, artifact_path)
        return f"{base}/{artifact_path}"
