"""At worker start, remove the export scratch space a killed worker left, and look for
rollouts it left behind (after their lease)."""

import logging

from celery.signals import worker_ready
from django.conf import settings

log = logging.getLogger(__name__)


@worker_ready.connect
def _resume_after_start(sender=None, **kwargs):
    # Imported here, not above: the deployer's AppConfig imports this module in every
    # process, and the export pulls in MLflow, which only a worker needs at this point.
    from deployer.export import scratch_clean

    removed = scratch_clean(settings.DEPLOYER_LOCAL_ROOT)
    if removed:
        log.info("Removed export scratch left by a stopped worker: %s", ", ".join(str(p) for p in removed))
    sender.app.send_task("deployer.resume_rollouts", countdown=settings.DEPLOYER_LEASE_SECONDS + 1)
