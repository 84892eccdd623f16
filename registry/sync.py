"""Reconcile the mirror with MLflow, the source of truth.

Models and versions created, changed or deleted directly in MLflow appear, change
or disappear here, aliases and tags included, each with an audit event by
"mlflow-sync". MLflow is read first, outside any transaction; the database is
then changed in one short transaction. Rows the web process wrote after the
MLflow snapshot was taken are left alone: they are newer than the snapshot.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from console.audit.services import audit_record

from . import gateway
from .artifact_paths import ArtifactPathError
from .mirror import inspection_fields, jsonable, model_fields, version_fields
from .models import ModelVersion, RegisteredModel, SyncState
from .savedmodel import Inspection

log = logging.getLogger(__name__)
ACTOR = "mlflow-sync"


@dataclass
class SyncReport:
    created: int = 0
    changed: int = 0
    removed: int = 0
    versions_created: int = 0
    versions_changed: int = 0
    versions_removed: int = 0
    inspected: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "notes"}


def _diff_json(diff: dict) -> tuple[dict, dict]:
    return ({k: jsonable(old) for k, (old, _) in diff.items()}, {k: jsonable(new) for k, (_, new) in diff.items()})


def _inspect(pairs) -> dict:
    found = {}
    for name, number in pairs:
        try:
            found[(name, number)] = gateway.inspect_model_version(name, number)
        except ArtifactPathError as exc:  # registered in MLflow directly: mirrored, never served
            found[(name, number)] = Inspection(note=f"Not servable: {exc}"[:500])
        except Exception as exc:
            found[(name, number)] = Inspection(note=f"Artifacts could not be inspected: {exc}"[:500])
    return found


def _apply(
    remote_models: list,
    remote_versions: dict,
    inspections: dict,
    snapshot_at,
    report: SyncReport,
    only: str | None = None,
) -> None:
    now = timezone.now()
    local_models = RegisteredModel.objects.select_for_update()
    if only is not None:
        local_models = local_models.filter(name=only)
    local = {m.name: m for m in local_models}
    for rm in remote_models:
        fields = model_fields(rm)
        model = local.pop(rm.name, None)
        if model is None:
            model = RegisteredModel.objects.create(name=rm.name, **fields)
            report.created += 1
            audit_record(
                actor=ACTOR,
                verb="model.discovered",
                obj=model,
                after={"tags": model.tags, "aliases": model.aliases, "versions": len(remote_versions.get(rm.name, []))},
            )
            new_model = True
        else:
            new_model = False
            if model.synced_at >= snapshot_at:
                continue  # written by Modelgate after the snapshot: newer than what we read
            if fields["aliases"] != model.aliases:
                fields["aliases"] = _hold_aliases_in_motion(model, fields["aliases"])
            diff = {
                k: v
                for k, v in ((k, (getattr(model, k), nv)) for k, nv in fields.items() if k != "updated_at")
                if v[0] != v[1]
            }
            if diff:
                for key, (_, value) in diff.items():
                    setattr(model, key, value)
                model.updated_at = fields["updated_at"]
                model.save()
                report.changed += 1
                before, after = _diff_json(diff)
                verb = "model.aliases_changed" if set(diff) == {"aliases"} else "model.changed"
                audit_record(actor=ACTOR, verb=verb, obj=model, before=before, after=after)
                if "aliases" in diff:
                    _after_aliases_changed(model)
        _apply_versions(
            model, remote_versions.get(rm.name, []), inspections, snapshot_at, report, quiet=new_model, now=now
        )
    for model in local.values():
        if model.synced_at >= snapshot_at:
            continue
        report.removed += 1
        audit_record(
            actor=ACTOR,
            verb="model.removed",
            obj=model,
            before={"versions": model.version_count, "aliases": model.aliases},
        )
        model.delete()


def _after_aliases_changed(model) -> None:
    """The checks settings.REGISTRY_ALIAS_CHECKS name run when MLflow's aliases of a model
    changed. The registry sits below the promotion workflow and does not import it: the
    workflow's drift check (environment aliases move only through promotions) is wired in
    by the settings, as middleware is."""
    for path in settings.REGISTRY_ALIAS_CHECKS:
        import_string(path)(model, actor=ACTOR)


def _hold_aliases_in_motion(model, remote: dict) -> dict:
    """The mirror keeps its value for an alias a rollout is moving: the rollout writes it
    when the version is live (promotion_mark_live), not the sync a moment before."""
    held = dict(remote)
    in_motion = import_string(settings.REGISTRY_ALIASES_IN_MOTION) if settings.REGISTRY_ALIASES_IN_MOTION else None
    for alias in in_motion(model) if in_motion else ():
        held.pop(alias, None)
        if alias in model.aliases:
            held[alias] = model.aliases[alias]
    return dict(sorted(held.items()))


def _apply_versions(model, remote: list, inspections: dict, snapshot_at, report, *, quiet: bool, now) -> None:
    local = {v.version: v for v in model.versions.all()}
    for mv in remote:
        number = int(mv.version)
        fields = version_fields(mv)
        # MLflow's version search leaves aliases out; the model's alias map has them all.
        fields["aliases"] = sorted(a for a, v in model.aliases.items() if v == number)
        version = local.pop(number, None)
        inspection = inspections.get((model.name, number))
        if inspection is not None:
            fields.update(inspection_fields(inspection, at=now))
            report.inspected += 1
        if version is None:
            version = ModelVersion.objects.create(model=model, version=number, **fields)
            report.versions_created += 1
            if not quiet:  # a newly discovered model's versions are counted in its own event
                audit_record(
                    actor=ACTOR,
                    verb="version.discovered",
                    obj=version,
                    after={"source": version.source, "run_id": version.run_id},
                )
            continue
        if version.synced_at >= snapshot_at:
            continue
        diff = {
            k: (getattr(version, k), v)
            for k, v in fields.items()
            if getattr(version, k) != v and k not in ("updated_at", "inspected_at")
        }
        if diff:
            for key, (_, value) in diff.items():
                setattr(version, key, value)
            version.updated_at = fields["updated_at"]
            version.save()
            report.versions_changed += 1
            before, after = _diff_json(diff)
            audit_record(actor=ACTOR, verb="version.changed", obj=version, before=before, after=after)
    for version in local.values():
        if version.synced_at >= snapshot_at:
            continue
        report.versions_removed += 1
        audit_record(
            actor=ACTOR,
            verb="version.removed",
            obj=version,
            before={"source": version.source, "aliases": version.aliases},
        )
        version.delete()
    numbers = list(model.versions.values_list("version", flat=True))
    latest, count = (max(numbers) if numbers else None), len(numbers)
    if (model.latest_version, model.version_count) != (latest, count):
        RegisteredModel.objects.filter(pk=model.pk).update(latest_version=latest, version_count=count)


def _needs_inspection(remote_versions: dict, limit: int) -> list[tuple[str, int]]:
    inspected = set(ModelVersion.objects.filter(inspected_at__isnull=False).values_list("model__name", "version"))
    todo = []
    for name, versions in remote_versions.items():
        for mv in versions:
            if mv.status == ModelVersion.READY and (name, int(mv.version)) not in inspected:
                todo.append((name, int(mv.version)))
    return todo[:limit]


def _run(remote_models, only=None) -> SyncReport:
    report = SyncReport()
    snapshot_at = timezone.now()
    remote_versions = defaultdict(list)
    for mv in gateway.iter_versions_of_model(only) if only else gateway.iter_model_versions():
        remote_versions[mv.name].append(mv)
    todo = _needs_inspection(remote_versions, settings.REGISTRY_SYNC_INSPECT_LIMIT)
    inspections = _inspect(todo)
    with transaction.atomic():
        # One apply at a time: the state row is the lock (on PostgreSQL; SQLite
        # serialises writers anyway).
        SyncState.objects.select_for_update().get_or_create(pk=1)
        _apply(remote_models, remote_versions, inspections, snapshot_at, report, only=only)
    return report


def sync_model(name: str) -> SyncReport:
    """Mirror one model now (used when a request names a model the sync has not seen yet)."""
    try:
        remote = [gateway.get_registered_model(name)]
    except gateway.MlflowNotFound:
        remote = []
    return _run(remote, only=name)


def registry_sync() -> SyncReport:
    """Reconcile every model and version, recording the outcome on SyncState for the UI."""
    SyncState.objects.update_or_create(pk=1, defaults={"started_at": timezone.now()})
    try:
        report = _run(list(gateway.iter_registered_models()))
    except gateway.MlflowError as exc:
        SyncState.objects.filter(pk=1).update(
            finished_at=timezone.now(), ok=False, message=f"MLflow could not be read: {exc}"[:2000]
        )
        raise
    SyncState.objects.filter(pk=1).update(finished_at=timezone.now(), ok=True, message="", counts=report.as_dict())
    log.info("registry sync: %s", report.as_dict())
    return report
