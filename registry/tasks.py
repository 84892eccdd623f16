from celery import shared_task

from . import gateway
from .sync import registry_sync


@shared_task(name="registry.sync_registry", autoretry_for=(gateway.MlflowUnavailable,),
             retry_backoff=True, retry_backoff_max=60, max_retries=3, soft_time_limit=600, time_limit=660)
def sync_registry_task():
    """Periodic (celery beat) reconcile of the mirror with MLflow; safe to run twice."""
    return registry_sync().as_dict()
