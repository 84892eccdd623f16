"""Every write to the registry: MLflow first, then the mirror row and its audit event
in one transaction. If the database side fails, the MLflow change is undone, and
whatever a crash leaves behind is repaired by the sync (registry/sync.py)."""

import logging

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from console.audit.services import audit_record
from console.errors import Conflict, NotFound, ServiceError, UpstreamUnavailable
from console.transactions import on_commit_safely

from . import gateway
from .artifact_paths import ArtifactPathError
from .convert import tensorflow_available
from .mirror import REGISTERED_BY_TAG, inspection_fields, jsonable, model_fields, version_fields
from .models import ModelVersion, RegisteredModel
from .savedmodel import Inspection
from .sources import SourceError, validate_source
from .sync import sync_model
from .validation import check_tag_total, clean_description, clean_model_name, clean_run_id, clean_tags

log = logging.getLogger(__name__)
CONVERT_TASK = "registry.convert_keras_version"


def _upstream(exc: gateway.MlflowError, *, field: str | None = None):
    """Turn a gateway error into the refusal a user sees."""
    if isinstance(exc, gateway.MlflowUnavailable):
        return UpstreamUnavailable(f"MLflow could not be reached; nothing was changed. Retry shortly. ({exc})")
    if isinstance(exc, gateway.MlflowNotFound):
        return NotFound(str(exc))
    if isinstance(exc, gateway.MlflowConflict):
        return Conflict(str(exc), field=field)
    return ServiceError(str(exc), field=field)


def _undo(what: str, fn, *args) -> None:
    try:
        fn(*args)
    except gateway.MlflowError:
        # The sync will mirror what MLflow kept; say so in the log for operators.
        log.exception("Could not undo %s in MLflow after a database failure; the sync will mirror it", what)


def model_create(*, actor, name: str, description: str = "", tags: dict | None = None) -> RegisteredModel:
    name = clean_model_name(name)
    description = clean_description(description)
    tags = clean_tags(tags)
    if RegisteredModel.objects.filter(name=name).exists():
        raise Conflict(f"Model {name!r} already exists.", field="name")
    try:
        rm = gateway.create_registered_model(name, description=description, tags=tags)
    except gateway.MlflowError as exc:
        raise _upstream(exc, field="name") from exc
    try:
        with transaction.atomic():
            model, _ = RegisteredModel.objects.update_or_create(
                name=name, defaults={**model_fields(rm), "created_by": actor}
            )
            audit_record(actor=actor, verb="model.created", obj=model, after={"description": description, "tags": tags})
    except Exception:
        _undo(f"model {name}", gateway.delete_registered_model, name)
        raise
    return model


def _apply_tags(set_tag, delete_tag, current: dict, changes: dict) -> dict:
    new = dict(current)
    for key, value in changes.items():
        if value is None:
            if key in new:
                delete_tag(key)
                new.pop(key)
        elif new.get(key) != value:
            set_tag(key, value)
            new[key] = value
    return new


def model_update(
    *, actor, model: RegisteredModel, description: str | None = None, tags: dict | None = None
) -> RegisteredModel:
    """Change the description and/or tags; a tag given as None is removed."""
    changes = clean_tags(tags, allow_delete=True)
    check_tag_total(model.tags, changes)
    if description is not None:
        description = clean_description(description)
    before = {"description": model.description, "tags": dict(model.tags)}
    try:
        if description is not None and description != model.description:
            gateway.update_registered_model(model.name, description=description)
        _apply_tags(
            lambda k, v: gateway.set_registered_model_tag(model.name, k, v),
            lambda k: gateway.delete_registered_model_tag(model.name, k),
            model.tags,
            changes,
        )
        rm = gateway.get_registered_model(model.name)
    except gateway.MlflowError as exc:
        raise _upstream(exc) from exc
    with transaction.atomic():
        model = RegisteredModel.objects.select_for_update().get(pk=model.pk)
        for field, value in model_fields(rm).items():
            setattr(model, field, value)
        model.save()
        after = {"description": model.description, "tags": model.tags}
        if after != before:
            audit_record(actor=actor, verb="model.updated", obj=model, before=before, after=after)
    return model


def _resolve_model(name: str) -> RegisteredModel:
    model = RegisteredModel.objects.filter(name=name).first()
    if model is not None:
        return model
    # Made directly in MLflow and not synced yet: mirror it now rather than refuse.
    try:
        gateway.get_registered_model(name)
    except gateway.MlflowNotFound:
        raise NotFound(f"Model {name!r} does not exist. Create it first (POST /api/v1/models/).") from None
    except gateway.MlflowError as exc:
        raise _upstream(exc) from exc
    sync_model(name)
    return RegisteredModel.objects.get(name=name)


def _safe_inspect(facts: gateway.SourceFacts) -> Inspection:
    try:
        return gateway.inspect_artifacts(facts.base, facts.names)
    except ArtifactPathError:
        raise
    except Exception as exc:  # an unreadable artifact must not lose the registration
        log.warning("Could not inspect the artifacts at %s: %s", facts.base, exc)
        return Inspection(note=f"Artifacts could not be inspected: {exc}"[:500])


def version_register(
    *, actor, model_name: str, source: str, run_id: str | None = None, description: str = "", tags: dict | None = None
) -> ModelVersion:
    """Register a version: validate, read what the source holds, create it in MLflow (tags in
    the same request), then mirror it with its audit event.

    The MLflow calls are the ones needed and no more (``make bench`` measures the rate): for a
    runs:/ source one get_run, one listing, the files the inspection reads, and the create.
    The artifacts are inspected before the version exists, so a source that breaks the
    artifact path rules creates nothing in MLflow."""
    try:
        source = validate_source(source, allowed_roots=settings.MODELGATE_ALLOWED_SOURCE_ROOTS)
    except SourceError as exc:
        raise ServiceError(str(exc), field="source") from None
    run_id = clean_run_id(run_id)
    description = clean_description(description)
    tags = clean_tags(tags)
    if source.startswith("runs:"):
        source_run = source.split(":/", 1)[1].lstrip("/").split("/", 1)[0]
        if run_id and run_id != source_run:
            raise ServiceError(f"run_id {run_id} differs from the run in the source ({source_run}).", field="run_id")
        run_id = source_run
    model = _resolve_model(model_name)

    try:
        source = gateway.resolve_alias_source(source)
        facts = gateway.source_facts(source)
    except gateway.MlflowNotFound as exc:
        raise ServiceError(f"Source does not exist in MLflow: {exc}", field="source") from None
    except gateway.MlflowError as exc:
        raise _upstream(exc, field="source") from exc
    # Lineage: a version registered from a logged model or another version keeps its run.
    if run_id and run_id != facts.run_id:  # the source's own run was read just now
        try:
            gateway.get_run(run_id)
        except gateway.MlflowNotFound:
            raise ServiceError(f"Run {run_id} does not exist in MLflow.", field="run_id") from None
        except gateway.MlflowError as exc:
            raise _upstream(exc, field="run_id") from exc
    run_id = run_id or facts.run_id
    try:
        inspection = _safe_inspect(facts)
    except ArtifactPathError as exc:
        raise ServiceError(f"Refused: {exc}", field="source") from None

    tags[REGISTERED_BY_TAG] = actor.get_username()
    try:
        mv = gateway.create_model_version(model.name, source=source, run_id=run_id, description=description, tags=tags)
    except gateway.MlflowError as exc:
        raise _upstream(exc, field="source") from exc
    number = int(mv.version)
    try:
        with transaction.atomic():
            model = RegisteredModel.objects.select_for_update().get(pk=model.pk)
            fields = version_fields(mv)
            if mv.status == ModelVersion.READY:
                fields.update(inspection_fields(inspection, at=timezone.now()))
            version, _ = ModelVersion.objects.update_or_create(model=model, version=number, defaults=fields)
            model.latest_version = max(model.latest_version or 0, number)
            model.version_count = model.versions.count()
            model.updated_at = max(model.updated_at, version.created_at)
            model.save(update_fields=["latest_version", "version_count", "updated_at", "synced_at"])
            audit_record(
                actor=actor,
                verb="version.registered",
                obj=version,
                after={
                    "source": source,
                    "run_id": run_id,
                    "description": description,
                    "tags": {k: v for k, v in tags.items() if k != REGISTERED_BY_TAG},
                    "servable": version.servable,
                },
            )
    except Exception:
        _undo(f"{model.name} v{number}", gateway.delete_model_version, model.name, number)
        raise
    return version


def version_update(
    *, actor, version: ModelVersion, description: str | None = None, tags: dict | None = None
) -> ModelVersion:
    changes = clean_tags(tags, allow_delete=True)
    check_tag_total(version.tags, changes)
    if description is not None:
        description = clean_description(description)
    name, number = version.model.name, version.version
    before = {"description": version.description, "tags": dict(version.tags)}
    try:
        if description is not None and description != version.description:
            gateway.update_model_version(name, number, description=description)
        _apply_tags(
            lambda k, v: gateway.set_model_version_tag(name, number, k, v),
            lambda k: gateway.delete_model_version_tag(name, number, k),
            version.tags,
            changes,
        )
        mv = gateway.get_model_version(name, number)
    except gateway.MlflowError as exc:
        raise _upstream(exc) from exc
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().select_related("model").get(pk=version.pk)
        for field, value in version_fields(mv).items():
            setattr(version, field, value)
        version.save()
        after = {"description": version.description, "tags": version.tags}
        if after != before:
            audit_record(
                actor=actor,
                verb="version.updated",
                obj=version,
                before={k: jsonable(v) for k, v in before.items()},
                after=after,
            )
    return version


# --- converting a Keras 3 archive to a SavedModel --------------------------------------


def version_convert_request(*, actor, version: ModelVersion) -> ModelVersion:
    """Queue the conversion of the version's Keras 3 archive to a SavedModel (the worker runs
    registry.convert_keras_version). Asking again while it is queued or running changes nothing."""
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().select_related("model").get(pk=version.pk)
        if version.conversion_state in (ModelVersion.CONVERSION_QUEUED, ModelVersion.CONVERSION_RUNNING):
            return version
        if version.servable:
            raise ServiceError(f"{version} is servable already; there is nothing to convert.", field="version")
        if not version.keras_archive_path:
            raise ServiceError(f"{version} holds no Keras 3 .keras archive to convert.", field="version")
        if not settings.MODELGATE_KERAS_CONVERSION or not tensorflow_available():
            raise ServiceError(
                "Converting Keras models needs TensorFlow on the worker, and this installation "
                "has it turned off (MODELGATE_KERAS_CONVERSION).",
                field="version",
            )
        before = {"conversion_state": version.conversion_state}
        version.conversion_state, version.conversion_detail = ModelVersion.CONVERSION_QUEUED, ""
        version.save(update_fields=["conversion_state", "conversion_detail"])
        audit_record(
            actor=actor,
            verb="version.conversion_requested",
            obj=version,
            before=before,
            after={"conversion_state": version.conversion_state, "archive": version.keras_archive_path},
        )
        version_id = version.pk
        on_commit_safely(lambda: _queue_conversion(version_id), what=f"Conversion of version {version_id}")
    return version


def _queue_conversion(version_id: int) -> None:
    # By name: the task module calls this one, so importing it here would close a cycle.
    current_app.signature(CONVERT_TASK, args=[version_id]).delay()


def version_conversion_claim(*, version_id: int) -> ModelVersion | None:
    """Claim a queued conversion (or one a killed worker left running); None if there is none."""
    claimed = ModelVersion.objects.filter(
        pk=version_id, conversion_state__in=[ModelVersion.CONVERSION_QUEUED, ModelVersion.CONVERSION_RUNNING]
    ).update(conversion_state=ModelVersion.CONVERSION_RUNNING)
    return ModelVersion.objects.select_related("model").get(pk=version_id) if claimed else None


def version_conversion_finish(*, version_id: int, inspection: Inspection, logged_uri: str) -> ModelVersion:
    """Record the converted SavedModel: the version's new inspection, and two audit events,
    one for the conversion and one for the artifact logged to MLflow."""
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().select_related("model").get(pk=version_id)
        before = {
            "servable": version.servable,
            "savedmodel_path": version.savedmodel_path,
            "serving_note": version.serving_note,
        }
        for field, value in inspection_fields(inspection, at=timezone.now()).items():
            setattr(version, field, value)
        version.keras_archive_path = version.keras_archive_path or inspection.keras_archive
        ok = inspection.servable
        version.conversion_state = ModelVersion.CONVERSION_DONE if ok else ModelVersion.CONVERSION_FAILED
        version.conversion_detail = (
            "" if ok else f"The converted SavedModel was logged but is not servable: {inspection.note}"[:500]
        )
        version.save()
        audit_record(
            actor="worker",
            verb="version.artifact_logged",
            obj=version,
            after={"uri": logged_uri, "from": version.keras_archive_path},
        )
        audit_record(
            actor="worker",
            verb="version.converted" if ok else "version.conversion_failed",
            obj=version,
            before=before,
            after={
                "servable": version.servable,
                "savedmodel_path": version.savedmodel_path,
                "serving_note": version.serving_note,
            },
        )
    return version


def version_conversion_fail(*, version_id: int, reason: str) -> ModelVersion:
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().select_related("model").get(pk=version_id)
        version.conversion_state, version.conversion_detail = ModelVersion.CONVERSION_FAILED, reason[:500]
        version.save(update_fields=["conversion_state", "conversion_detail"])
        audit_record(
            actor="worker", verb="version.conversion_failed", obj=version, after={"reason": version.conversion_detail}
        )
    return version
