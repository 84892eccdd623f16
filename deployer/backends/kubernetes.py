"""The Kubernetes backend in the pipeline's interface: TF Serving objects rendered by
deployer.manifests (a canary's by deployer.canary_manifests), applied and followed through
deployer.backends.kubernetes_api.

A canary's traffic moves only once its pods are ready, as Argo Rollouts waits for the canary
ReplicaSet before it scales the stable one down or sets a route's weight: ``apply`` of a canary's
objects holds back those that shift traffic (the HTTPRoute, the stable Deployment's smaller
count), and ``wait`` applies them when the canary Deployment has rolled out, then waits for the
stable one. Both steps are safe to repeat, so a worker killed between them changes nothing.
"""

import logging
import time
from collections.abc import Callable

from deployer import canary_manifests, manifests
from deployer.backends.base import Answer
from deployer.backends.errors import BackendError, PermanentError, RolloutFailed
from deployer.manifests import Release

log = logging.getLogger(__name__)

STALE_CONDITION_GRACE = 5.0
# canary_end waits this long past the target's progress deadline for the stable pods to be back.
END_GRACE = 30.0


class KubernetesBackend:
    def __init__(self, *, target: manifests.Target, client):
        self.target = target
        self.client = client  # a deployer.backends.kubernetes_api.KubernetesApi

    @staticmethod
    def _deployment_name(objects: list[dict]) -> str:
        return next(o["metadata"]["name"] for o in objects if o["kind"] == "Deployment")

    @staticmethod
    def _shifts(objects: list[dict]) -> list[dict]:
        """The objects of a canary's set that move traffic to it (none outside a canary's set)."""
        if not any(o["kind"] == "Deployment" and canary_manifests.is_canary(o) for o in objects):
            return []
        return [
            o
            for o in objects
            if o["kind"] == "HTTPRoute" or (o["kind"] == "Deployment" and not canary_manifests.is_canary(o))
        ]

    def render(self, release: Release) -> list[dict]:
        try:
            return manifests.render(self.target, release)
        except manifests.ManifestError as exc:
            raise PermanentError(str(exc)) from exc

    def render_canary(self, stable: Release, canary: Release, weight: int) -> list[dict]:
        try:
            return canary_manifests.render_canary(self.target, stable, canary, weight)
        except manifests.ManifestError as exc:
            raise PermanentError(str(exc)) from exc

    def prepare(self, release: Release, version) -> str:
        return (
            f"The pod's init container downloads models:/{release.model}/{release.version} from MLflow "
            f"into the serving volume."
        )

    def apply(self, objects: list[dict], *, previous: list[dict] | None = None) -> None:
        shifts = self._shifts(objects)
        self.client.apply([o for o in objects if not any(o is s for s in shifts)])

    def wait(self, objects: list[dict], *, timeout: float, progress: Callable[[str], None]) -> str:
        deadline = time.monotonic() + timeout
        name = self._deployment_name(objects)
        shifts = self._shifts(objects)
        if not shifts:
            return self._wait_for(name, deadline, progress)
        name = next(
            o["metadata"]["name"] for o in objects if o["kind"] == "Deployment" and canary_manifests.is_canary(o)
        )
        done = [self._wait_for(name, deadline, progress)]
        progress("the canary's pods are ready: moving its share of the traffic to it")
        self.client.apply(shifts)
        for stable in (o["metadata"]["name"] for o in shifts if o["kind"] == "Deployment"):
            done.append(self._wait_for(stable, deadline, progress))
        return "; ".join(done)

    def _wait_for(self, name: str, deadline: float, progress: Callable[[str], None]) -> str:
        started = time.monotonic()
        while True:
            try:
                self.client.wait_for_rollout(name, timeout=deadline - time.monotonic(), progress=progress)
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

    def canary_end(self, stable: Release, objects: list[dict]) -> None:
        """All traffic back to ``stable``, then the canary's objects deleted. With a Gateway the
        route goes back to 100 % stable (the stable pods were never scaled down); otherwise the
        stable Deployment goes back to its full count and its pods are awaited before the canary's
        go, so the stable version is not left short of pods. A stable version that cannot come
        back in time does not keep the canary: it is removed all the same."""
        back = canary_manifests.stable_traffic(self.target, stable)
        self.client.apply(back)
        for deployment in (o for o in back if o["kind"] == "Deployment"):
            name = deployment["metadata"]["name"]
            try:
                self.client.wait_for_rollout(name, timeout=self.target.progress_deadline_seconds + END_GRACE)
            except (BackendError, RolloutFailed) as exc:
                log.warning("Ending the canary of %s: the stable pods are not all back (%s)", name, exc)
        self.client.delete(canary_manifests.canary_objects(self.target, stable, objects))

    def call(self, release: Release, method: str, path: str, body: dict | None = None) -> list[Answer]:
        name = manifests.resource_name(release.model, release.environment)
        pods = self.client.serving_pods(name, version=release.version, track=release.track)
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
