"""At worker start, look for rollouts a killed worker left behind (after their lease)."""

from celery.signals import worker_ready


@worker_ready.connect
def _resume_after_start(sender=None, **kwargs):
    from django.conf import settings

    sender.app.send_task("deployer.resume_rollouts", countdown=settings.DEPLOYER_LEASE_SECONDS + 1)
