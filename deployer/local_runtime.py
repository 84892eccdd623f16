"""The embedded default's model servers follow `make run`: started with it, stopped with it.

Serving state lives in the database (each deployment's live revision), so on start every
local deployment that should serve gets its model server back, exactly as its last
revision applied it; on exit they stop, leaving no process and no pid file behind.
"""

import logging
from pathlib import Path

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


def _pid_files() -> list[Path]:
    return sorted(Path(settings.DEPLOYER_LOCAL_ROOT).glob("*/server.pid"))


def _by_directory(pid_file: Path) -> LocalBackend:
    """The backend of a model server known only by its directory (the port is not needed to stop it)."""
    return LocalBackend(root=settings.DEPLOYER_LOCAL_ROOT, name=pid_file.parent.name, port=0)


def start_all() -> list[str]:
    # A pid file whose process is gone (the machine restarted, `make run` was killed) says nothing.
    for pid_file in _pid_files():
        if _by_directory(pid_file).pid() is None:
            pid_file.unlink(missing_ok=True)
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


def stop_all() -> list[str]:
    """Stop every local model server, whatever its deployment's state (a rollout cut short
    leaves one running for a deployment that does not serve yet), and remove the pid files.
    Returns the names of those that were running."""
    stopped = []
    for pid_file in _pid_files():
        backend = _by_directory(pid_file)
        if backend.pid() is not None:
            backend.stop()
            stopped.append(backend.name)
        pid_file.unlink(missing_ok=True)
    return stopped
