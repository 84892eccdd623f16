import logging
import tempfile

from celery import shared_task

from . import gateway, services
from .convert import ConversionError, keras_archive_to_savedmodel
from .models import ModelVersion
from .savedmodel import CONVERTED_DIR
from .sync import registry_sync

log = logging.getLogger(__name__)


@shared_task(
    name="registry.sync_registry",
    autoretry_for=(gateway.MlflowUnavailable,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=3,
    soft_time_limit=600,
    time_limit=660,
)
def sync_registry_task():
    """Periodic (celery beat) reconcile of the mirror with MLflow; safe to run twice."""
    return registry_sync().as_dict()


@shared_task(
    name=services.CONVERT_TASK,
    autoretry_for=(gateway.MlflowUnavailable,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=3,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=900,
    time_limit=960,
)
def convert_keras_version(version_id: int):
    """Load the version's Keras 3 archive, export a SavedModel, log it to MLflow beside the
    original artifacts and mark the version servable. Takes an id; a second run, or one for a
    version that is gone or done, returns quietly; a rerun after a kill logs the same files."""
    if not ModelVersion.objects.filter(pk=version_id).exists():
        return None
    version = services.version_conversion_claim(version_id=version_id)
    if version is None:
        return None
    name, number = version.model.name, version.version
    try:
        with tempfile.TemporaryDirectory() as tmp:
            archive = gateway.download_model_version(name, number, version.keras_archive_path, f"{tmp}/download")
            exported = keras_archive_to_savedmodel(archive, f"{tmp}/{CONVERTED_DIR}")
            logged = gateway.log_model_version_artifacts(name, number, exported, CONVERTED_DIR)
        inspection = gateway.inspect_model_version(name, number)
    except gateway.MlflowUnavailable:
        raise  # retried; the claim stays "running" and the retry takes it again
    except (ConversionError, gateway.MlflowError) as exc:
        services.version_conversion_fail(version_id=version_id, reason=str(exc))
        return "failed"
    services.version_conversion_finish(version_id=version_id, inspection=inspection, logged_uri=logged)
    return "done"
