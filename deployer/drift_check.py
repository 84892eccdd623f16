"""Compare what runs with the revision that should be running, for every serving deployment."""

import logging

from deployer import drift, services
from deployer.backends import backend_for
from deployer.backends.errors import BackendError
from deployer.models import Deployment, Rollout

log = logging.getLogger(__name__)


def drift_check(deployment_id: int) -> Deployment | None:
    deployment = (
        Deployment.objects.select_related("target__environment", "model", "live_rollout")
        .filter(pk=deployment_id, state=Deployment.SERVING)
        .first()
    )
    if deployment is None or deployment.live_rollout is None:
        return None
    if deployment.rollouts.filter(state__in=Rollout.ACTIVE).exists():
        return None  # mid-rollout the objects differ on purpose
    applied = deployment.live_rollout.manifests
    try:
        live = backend_for(deployment).read(applied)
    except BackendError as exc:
        log.warning("Drift check of %s could not read the live objects: %s", deployment, exc)
        return None
    return services.deployment_record_drift(deployment_id=deployment.pk, changes=drift.diff(applied, live))


def drift_check_all() -> int:
    checked = 0
    for deployment_id in Deployment.objects.filter(state=Deployment.SERVING).values_list("pk", flat=True):
        if drift_check(deployment_id) is not None:
            checked += 1
    return checked
