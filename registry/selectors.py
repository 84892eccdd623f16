"""Reads of the registry mirror, shared by the pages and the API."""

import logging
from dataclasses import dataclass

from django.core.cache import cache
from django.db import connection
from django.db.models import Q

from console.errors import NotFound

from . import gateway
from .models import ModelVersion, RegisteredModel, SyncState

log = logging.getLogger(__name__)


def _tag_filter(qs, tag: str, prefix: str = ""):
    """tag=key or tag=key:value."""
    key, sep, value = tag.partition(":")
    if sep:
        return qs.filter(**{f"{prefix}tags__{key}": value}) if key else qs
    return qs.filter(**{f"{prefix}tags__has_key": key})


def model_list(*, q: str = "", tag: str = "", alias: str = "", servable: bool | None = None):
    qs = RegisteredModel.objects.all()
    if q:
        qs = qs.filter(Q(name__icontains=q) | Q(description__icontains=q))
    if tag:
        qs = _tag_filter(qs, tag)
    if alias:
        qs = qs.filter(aliases__has_key=alias)
    if servable is not None:
        qs = qs.filter(versions__servable=servable).distinct()
    return qs.order_by("name")


def model_get(name: str) -> RegisteredModel:
    model = RegisteredModel.objects.filter(name=name).first()
    if model is None:
        raise NotFound(f"Model {name!r} does not exist.")
    return model


def version_list(
    *,
    model: RegisteredModel | None = None,
    status: str = "",
    run_id: str = "",
    tag: str = "",
    alias: str = "",
    servable: bool | None = None,
):
    qs = ModelVersion.objects.select_related("model")
    if model is not None:
        qs = qs.filter(model=model)
    if status:
        qs = qs.filter(status=status)
    if run_id:
        qs = qs.filter(run_id=run_id)
    if tag:
        qs = _tag_filter(qs, tag)
    if alias:
        qs = (
            qs.filter(aliases__contains=[alias])
            if _supports_json_contains()
            else qs.filter(aliases__icontains=f'"{alias}"')
        )
    if servable is not None:
        qs = qs.filter(servable=servable)
    return qs


def _supports_json_contains() -> bool:
    return connection.features.supports_json_field_contains


def version_get(name: str, number) -> ModelVersion:
    try:
        number = int(number)
    except (TypeError, ValueError):
        raise NotFound(f"Version {number!r} is not a number.") from None
    version = ModelVersion.objects.select_related("model").filter(model__name=name, version=number).first()
    if version is None:
        if not RegisteredModel.objects.filter(name=name).exists():
            raise NotFound(f"Model {name!r} does not exist.")
        raise NotFound(f"Model {name!r} has no version {number}.")
    return version


def version_recent_requests(version: ModelVersion, *, limit: int = 10):
    """The newest promotion requests for ``version`` (through the reverse relation: the
    registry's core does not import the promotion workflow)."""
    return version.promotion_requests.select_related("environment", "requested_by").order_by("-created_at")[:limit]


@dataclass(frozen=True)
class RunView:
    run: gateway.RunSummary | None
    error: str = ""
    unavailable: bool = False  # MLflow could not be reached: worth a retry, not a 404


RUN_CACHE_SECONDS = 60


def version_run(version: ModelVersion) -> RunView:
    """The training run's metrics and params, read from MLflow (cached briefly)."""
    if not version.run_id:
        return RunView(None, "This version was registered without a training run.")
    key = f"mlflow-run:{version.run_id}"
    run = cache.get(key)
    if run is None:
        try:
            run = gateway.get_run(version.run_id)
        except gateway.MlflowNotFound:
            return RunView(None, f"Run {version.run_id} no longer exists in MLflow.")
        except gateway.MlflowError as exc:
            log.warning("Could not read run %s: %s", version.run_id, exc)
            return RunView(None, "MLflow could not be reached to read the run; reload in a moment.", unavailable=True)
        cache.set(key, run, RUN_CACHE_SECONDS)
    return RunView(run)


def sync_state() -> SyncState:
    """Read-only: an unsaved blank state until the first sync has run."""
    return SyncState.objects.filter(pk=1).first() or SyncState(pk=1)
