"""Turn MLflow entities into the field values of the mirror rows (pure functions)."""

from datetime import UTC, datetime

REGISTERED_BY_TAG = "modelgate.registered_by"
RESERVED_TAG_PREFIX = "modelgate."


def ms_to_datetime(ms: int | None) -> datetime:
    return datetime.fromtimestamp((ms or 0) / 1000, tz=UTC)


def model_fields(rm) -> dict:
    aliases = {alias: int(version) for alias, version in (rm.aliases or {}).items()}
    return {
        "description": rm.description or "",
        "tags": dict(rm.tags or {}),
        "aliases": dict(sorted(aliases.items())),
        "created_at": ms_to_datetime(rm.creation_timestamp),
        "updated_at": ms_to_datetime(rm.last_updated_timestamp or rm.creation_timestamp),
    }


def version_fields(mv) -> dict:
    tags = dict(mv.tags or {})
    return {
        "description": mv.description or "",
        "tags": tags,
        "aliases": sorted(mv.aliases or []),
        "source": mv.source or "",
        "run_id": mv.run_id or "",
        "status": mv.status or "READY",
        "status_message": mv.status_message or "",
        "creator": tags.get(REGISTERED_BY_TAG) or (mv.user_id or ""),
        "created_at": ms_to_datetime(mv.creation_timestamp),
        "updated_at": ms_to_datetime(mv.last_updated_timestamp or mv.creation_timestamp),
    }


def inspection_fields(inspection, *, at: datetime) -> dict:
    return {
        "flavors": inspection.flavors,
        "signature": inspection.signature,
        "savedmodel_path": inspection.savedmodel_path,
        "servable": inspection.servable,
        "serving_note": inspection.note[:500],
        "keras_archive_path": inspection.keras_archive,
        "inspected_at": at,
    }


def jsonable(value):
    return value.isoformat() if isinstance(value, datetime) else value
