"""The embedded default's model servers follow `make run`: started with it, stopped with it.

Serving state lives in the database (each deployment's live revision), so on start every
local deployment that should serve gets its model server and router back, exactly as its last
revision applied them, and a canary that was under way its own server (the routes file kept
its weight); on exit they stop, leaving no process and no pid file behind.
"""

import logging
from pathlib import Path

from django.conf import settings

from deployer.backends.errors import BackendError
from deployer.backends.local import LocalBackend, pid_files, process_alive
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
    return pid_files(Path(settings.DEPLOYER_LOCAL_ROOT))


def _directories() -> list[Path]:
    """Each deployment directory holding a pid file (its own, or its canary's)."""
    root = Path(settings.DEPLOYER_LOCAL_ROOT)
    return sorted({root / pid_file.relative_to(root).parts[0] for pid_file in _pid_files()})


def _by_directory(directory: Path) -> LocalBackend:
    """The backend of a deployment known only by its directory (the port is not needed to stop it)."""
    return LocalBackend(root=settings.DEPLOYER_LOCAL_ROOT, name=directory.name, port=0)


def start_all() -> list[str]:
    # A pid file whose process is gone (the machine restarted, `make run` was killed) says nothing.
    for pid_file in _pid_files():
        if not process_alive(pid_file):
            pid_file.unlink(missing_ok=True)
    started = []
    for deployment in _serving():
        if deployment.live_rollout is None:
            continue
        try:
            backend = _backend(deployment)
            backend.apply(deployment.live_rollout.manifests)
            canary = backend.resume_canary()
            started.append(f"{deployment} on port {deployment.local_port}" + (" (with its canary)" if canary else ""))
        except BackendError as exc:
            log.warning("%s could not start: %s (the deployment page shows it as out of sync)", deployment, exc)
    return started


def stop_all() -> list[str]:
    """Stop every local deployment's processes (router, model servers), whatever its state (a
    rollout cut short leaves one running for a deployment that does not serve yet), and remove
    the pid files. Returns the names of the deployments that had one running."""
    stopped = []
    for directory in _directories():
        backend = _by_directory(directory)
        if backend.running():
            backend.stop()
            stopped.append(backend.name)
    for pid_file in _pid_files():
        pid_file.unlink(missing_ok=True)
    return stopped
