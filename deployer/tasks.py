"""Celery tasks: thin, take ids, safe to run twice. The pipeline and the services do the work.

acks_late with reject_on_worker_lost: a message is acknowledged only when its task ends,
so a worker killed mid-rollout does not lose it. Independently of the broker's redelivery,
``resume_rollouts`` (beat, and once at worker start) finds rollouts whose worker stopped
renewing its lease and runs them again from the step that was interrupted.
"""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from deployer.backends.errors import TransientError
from deployer.drift_check import drift_check_all
from deployer.guard import guard_check_all
from deployer.metrics import tasks as _metrics_tasks  # noqa: F401 - registers the metrics beat tasks
from deployer.models import Rollout
from deployer.pipeline import rollout_run
from deployer.services import canary_reconcile, handover_sweep, queue_run, rollout_for_promotion

log = logging.getLogger(__name__)
MAX_RETRIES = 5
# A rollout waits at most rollout_timeout_seconds per wait; the limits stop a task that hangs
# on something else (a stuck TCP connection) so its lease runs out and it is resumed.
SOFT_LIMIT, HARD_LIMIT = 3600, 3700


# A temporary error (the API server or the model server could not be reached) gives the
# rollout back and the task retries after Celery's exponential backoff: at most 5 s, 10 s, …
# 120 s, jittered so rollouts stopped by one outage do not all come back at once. The last
# attempt fails the rollout instead (final_attempt).
RETRY = dict(
    autoretry_for=(TransientError,),
    retry_backoff=5,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=MAX_RETRIES,
)


def _run(task, rollout_id: int):
    return rollout_run(rollout_id, final_attempt=task.request.retries >= MAX_RETRIES)


@shared_task(
    bind=True,
    name="deployer.deploy_promotion",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=SOFT_LIMIT,
    time_limit=HARD_LIMIT,
    **RETRY,
)
def deploy_promotion(self, request_id: int):
    """Queued by the registry when a promotion is approved."""
    rollout_id = rollout_for_promotion(request_id=request_id)
    if rollout_id is None:
        return None
    return _run(self, rollout_id)


@shared_task(
    bind=True,
    name="deployer.run_rollout",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=SOFT_LIMIT,
    time_limit=HARD_LIMIT,
    **RETRY,
)
def run_rollout(self, rollout_id: int):
    return _run(self, rollout_id)


@shared_task(name="deployer.resume_rollouts")
def resume_rollouts():
    """First the hand-over sweep (approved requests whose deployment message was lost get
    their rollout: ``services.handover_sweep``). Then queue every rollout no live worker is
    running: running with an expired lease (its worker died), or queued for longer than a
    lease (its message was lost, or it waited behind an earlier rollout of the same
    deployment). Running one twice is harmless: the
    claim lets only one worker in."""
    handed_over = handover_sweep()
    stale = timezone.now() - timedelta(seconds=settings.DEPLOYER_LEASE_SECONDS)
    # A canary waiting between checks (next_check_at set) has no worker on purpose: it is the
    # controller's (reconcile_canaries), not a dead worker's.
    worked = Q(state=Rollout.RUNNING, next_check_at__isnull=True)
    ids = list(
        Rollout.objects.filter(
            (worked & Q(heartbeat_at__lt=stale))
            | (worked & Q(heartbeat_at__isnull=True))
            | Q(state=Rollout.QUEUED, created_at__lt=stale)
        )
        .order_by("created_at")
        .values_list("pk", flat=True)
    )
    with transaction.atomic():
        for rollout_id in ids:
            queue_run(rollout_id)
    if ids:
        log.info("Resuming rollouts %s", ids)
    return handed_over + [i for i in ids if i not in handed_over]


@shared_task(name="deployer.reconcile_canaries")
def reconcile_canaries():
    """The canary controller (beat, every CANARY_RECONCILE_SECONDS): a canary lasts minutes
    to hours but holds a worker only while it acts; between checks it waits with its
    ``next_check_at``, and this queues those whose check is due."""
    return canary_reconcile()


@shared_task(name="deployer.check_drift")
def check_drift():
    return drift_check_all()


@shared_task(name="deployer.guard_check")
def guard_check():
    return guard_check_all()
