"""At worker start, remove the export scratch space a killed worker left, and look for
rollouts it left behind (after their lease)."""

import logging

from celery.signals import worker_ready

log = logging.getLogger(__name__)


@worker_ready.connect
def _resume_after_start(sender=None, **kwargs):
    from django.conf import settings

    from deployer.export import scratch_clean

    removed = scratch_clean(settings.DEPLOYER_LOCAL_ROOT)
    if removed:
        log.info("Removed export scratch left by a stopped worker: %s", ", ".join(str(p) for p in removed))
    sender.app.send_task("deployer.resume_rollouts", countdown=settings.DEPLOYER_LEASE_SECONDS + 1)
