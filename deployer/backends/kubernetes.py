"""The Kubernetes backend in the pipeline's interface: TF Serving objects rendered by
deployer.manifests, applied and followed through deployer.backends.kubernetes_api."""

import time
from collections.abc import Callable

from deployer import manifests
from deployer.backends.base import Answer
from deployer.backends.errors import RolloutFailed
from deployer.manifests import Release

STALE_CONDITION_GRACE = 5.0


class KubernetesBackend:
    def __init__(self, *, target: manifests.Target, client):
        self.target = target
        self.client = client  # a deployer.backends.kubernetes_api.KubernetesApi

    @staticmethod
    def _deployment_name(objects: list[dict]) -> str:
        return next(o["metadata"]["name"] for o in objects if o["kind"] == "Deployment")

    def render(self, release: Release) -> list[dict]:
        try:
            return manifests.render(self.target, release)
        except manifests.ManifestError as exc:
            from deployer.backends.errors import PermanentError

            raise PermanentError(str(exc)) from exc

    def prepare(self, release: Release, version) -> str:
        return (
            f"The pod's init container downloads models:/{release.model}/{release.version} from MLflow "
            f"into the serving volume."
        )

    def apply(self, objects: list[dict], *, previous: list[dict] | None = None) -> None:
        self.client.apply(objects)

    def wait(self, objects: list[dict], *, timeout: float, progress: Callable[[str], None]) -> str:
        name = self._deployment_name(objects)
        started = time.monotonic()
        while True:
            try:
                self.client.wait_for_rollout(name, timeout=timeout - (time.monotonic() - started), progress=progress)
                return f'deployment "{name}" successfully rolled out'
            except RolloutFailed:
                # Rolling back to a ReplicaSet that still exists creates no new one, and the
                # controller's first status after it can still carry the failed rollout's
                # ProgressDeadlineExceeded (kubectl reports the same). Only a deadline that
                # holds past a short grace is this rollout's own.
                if time.monotonic() - started > STALE_CONDITION_GRACE:
                    raise
                progress("the previous rollout's ProgressDeadlineExceeded is still reported; reading again")
                time.sleep(0.5)

    def finalize(self, objects: list[dict]) -> None:
        """Kubernetes already removed the old pods during the rolling update."""

    def call(self, release: Release, method: str, path: str, body: dict | None = None) -> list[Answer]:
        name = manifests.resource_name(release.model, release.environment)
        pods = self.client.serving_pods(name, version=release.version)
        return [
            Answer(replica=pod, status=status, body=answer)
            for pod in pods
            for status, answer in [self.client.proxy(pod, method, path, body)]
        ]

    def call_one(self, release: Release, replica: str, method: str, path: str, body: dict | None = None) -> int:
        return self.client.proxy(replica, method, path, body)[0]

    def health(self, name: str) -> dict:
        return self.client.deployment_health(name)

    def read(self, objects: list[dict]) -> list[dict | None]:
        return self.client.read(objects)

    def remove(self, objects: list[dict]) -> None:
        self.client.delete(objects)  # it deletes the autoscaler and Deployment before their ConfigMap
