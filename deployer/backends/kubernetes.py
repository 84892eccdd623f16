"""The Kubernetes backend in the pipeline's interface: TF Serving objects rendered by
deployer.manifests (a canary's by deployer.canary_manifests), applied and followed through
deployer.backends.kubernetes_api.

A canary's traffic moves only once its pods are ready, as Argo Rollouts waits for the canary
ReplicaSet before it scales the stable one down or sets a route's weight: ``apply`` of a canary's
objects holds back those that shift traffic (the HTTPRoute, the stable Deployment's smaller
count), and ``wait`` applies them when the canary Deployment has rolled out, then waits for the
stable one. Both steps are safe to repeat, so a worker killed between them changes nothing.

An HTTPRoute is in force only once the Gateway's controller has taken it: ``wait`` then polls
the live route until its ``status.parents`` entry for the Gateway has Accepted and ResolvedRefs
True at the route's current generation (rollout_status.route_status), so a canary step's
analysis does not start on the old weights, and ``canary_end`` deletes the canary's Service
only after the route back to 100 % stable has been taken.
"""

import logging
import time
from collections.abc import Callable

from deployer import canary_manifests, manifests
from deployer.backends.base import Answer
from deployer.backends.errors import BackendError, PermanentError, RolloutFailed, RolloutTimeout
from deployer.manifests import Release
from deployer.rollout_status import RolloutStatus, RouteRefused, route_status

log = logging.getLogger(__name__)

STALE_CONDITION_GRACE = 5.0
# canary_end waits this long past the target's progress deadline for the stable pods to be back.
END_GRACE = 30.0
# How often the live HTTPRoute is read while its Gateway's controller has not taken it yet.
ROUTE_POLL_SECONDS = 0.25
# A controller may report ResolvedRefs=False for a moment on a Service its cache has not seen
# yet (it re-evaluates the route on Service events); a refusal that holds this long is real.
REFUSED_GRACE = 3.0


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
            done = [self._wait_for(name, deadline, progress)]
        else:
            name = next(
                o["metadata"]["name"] for o in objects if o["kind"] == "Deployment" and canary_manifests.is_canary(o)
            )
            done = [self._wait_for(name, deadline, progress)]
            progress("the canary's pods are ready: moving its share of the traffic to it")
            self.client.apply(shifts)
            for stable in (o["metadata"]["name"] for o in shifts if o["kind"] == "Deployment"):
                done.append(self._wait_for(stable, deadline, progress))
        for route in (o for o in objects if o["kind"] == "HTTPRoute"):
            done.append(self._wait_for_route(route, deadline, progress))
        return "; ".join(done)

    def _wait_for_route(self, route: dict, deadline: float, progress: Callable[[str], None]) -> str:
        """Poll the live route until its Gateway's controller has taken its current generation.
        Raises RouteRefused (a RolloutFailed) for a refusal that holds past REFUSED_GRACE, and
        RolloutTimeout at the deadline, quoting what the route's status said last."""
        started, shown, refused_since = time.monotonic(), None, None
        where = f"{route['metadata'].get('namespace', self.target.namespace)}/{route['metadata']['name']}"
        while True:
            (live,) = self.client.read([route])
            if live is None:
                raise PermanentError(f"HTTPRoute {where} was deleted while waiting for its Gateway to take it.")
            try:
                status = route_status(live)
                refused_since = None
            except RouteRefused as refused:
                refused_since = refused_since or time.monotonic()
                if time.monotonic() - refused_since >= REFUSED_GRACE or time.monotonic() >= deadline:
                    raise
                status = RolloutStatus(False, f"{refused}; reading again")
            if status.message != shown:
                shown = status.message
                progress(status.message)
            if status.done:
                return status.message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RolloutTimeout(
                    f"HTTPRoute {where} was not taken by its Gateway within "
                    f"{time.monotonic() - started:.0f} s: {status.message}"
                )
            time.sleep(min(ROUTE_POLL_SECONDS, remaining))

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
        route goes back to 100 % stable (the stable pods were never scaled down) and the canary's
        Service is deleted only once the Gateway's controller has taken that route, so the data
        plane no longer sends it traffic; otherwise the stable Deployment goes back to its full
        count and its pods are awaited before the canary's go, so the stable version is not left
        short of pods. A stable version that cannot come back in time, or a route no controller
        takes in time, does not keep the canary: it is removed all the same. Safe to repeat:
        the apply changes nothing the second time and what is already gone is fine."""
        back = canary_manifests.stable_traffic(self.target, stable)
        self.client.apply(back)
        limit = self.target.progress_deadline_seconds + END_GRACE
        for obj in back:
            name = obj["metadata"]["name"]
            try:
                if obj["kind"] == "Deployment":
                    self.client.wait_for_rollout(name, timeout=limit)
                elif obj["kind"] == "HTTPRoute":
                    self._wait_for_route(obj, time.monotonic() + limit, lambda message: None)
            except (BackendError, RolloutFailed) as exc:
                log.warning("Ending the canary of %s: all traffic is not back on stable (%s)", name, exc)
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
