"""The embedded default's model servers follow `make run`: started with it, stopped with it.

Serving state lives in the database (each deployment's live revision), so on start every
local deployment that should serve gets its model server back, exactly as its last
revision applied it; on exit they stop, leaving no process behind.
"""

import logging

from django.conf import settings

from deployer.backends.errors import BackendError
from deployer.backends.local import LocalBackend
from deployer.models import Deployment, DeploymentTarget

log = logging.getLogger(__name__)


def _serving():
    return Deployment.objects.filter(target__backend=DeploymentTarget.LOCAL, state=Deployment.SERVING).select_related(
        "live_rollout", "model", "target__environment"
    )


def _backend(deployment: Deployment) -> LocalBackend:
    # A deployment on a local target is given its port when it is created (services).
    assert deployment.local_port is not None, f"{deployment} has no local port"
    return LocalBackend(root=settings.DEPLOYER_LOCAL_ROOT, name=deployment.name, port=deployment.local_port)


def start_all() -> list[str]:
    started = []
    for deployment in _serving():
        if deployment.live_rollout is None:
            continue
        try:
            _backend(deployment).apply(deployment.live_rollout.manifests)
            started.append(f"{deployment} on port {deployment.local_port}")
        except BackendError as exc:
            log.warning("%s could not start: %s (the deployment page shows it as out of sync)", deployment, exc)
    return started


def stop_all() -> None:
    for deployment in _serving():
        backend = _backend(deployment)
        if backend.pid() is not None:
            backend.stop()
