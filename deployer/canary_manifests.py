"""A canary beside the stable version on Kubernetes, as pure functions (manifests.py renders
each track's objects; this module decides how many pods and which weights).

Two ways to split the traffic, as Argo Rollouts does (utils/replicaset/canary.go):

- Basic (no Gateway on the target): a second Deployment, `<name>-canary`, whose pods the stable
  Service selects too (manifests.service_selector). kube-proxy spreads connections evenly over the
  ready pods, so the canary's share is its share of the pods, and the pod counts follow Argo's
  canary without a traffic router (approximateWeightedCanaryStableReplicaCounts, called from
  CalculateReplicaCountsForBasicCanary, canary.go:90-95 and :183 at commit 5b40f08): of the
  candidate (canary, total) pairs with total = replicas or replicas + 1 (our Deployments surge by
  one pod), the one whose canary/total is nearest the weight, never zero pods on either side;
  the stable Deployment is scaled down to total - canary. The share is approximate when there are
  few pods: with one replica any weight gives one canary pod beside one stable pod, 50 %.
- Precise (the target names a Gateway): each track has its own Service and the model's HTTPRoute
  weighs them (`backendRefs[].weight`), whatever the pod counts. The stable Deployment keeps all
  its replicas and the canary gets ceil(replicas × weight / 100), as Argo's traffic-routed canary
  without dynamic stable scaling does (CalculateReplicaCountsForTrafficRoutedCanary,
  trafficWeightToReplicas, same file).

With an autoscaler the stable replica count is the HPA's: the stable Deployment is left alone and
the canary's count is taken from the HPA's minimum (so a basic split is rougher still).

A canary's objects carry `modelgate.io/track: canary`; `canary_objects` picks them out to delete.
"""

import math

from deployer import manifests as m
from deployer.manifests import ManifestError, Release, Target


def split_replicas(replicas: int, weight: int) -> tuple[int, int]:
    """(canary pods, stable pods) whose ratio is nearest ``weight`` % for a basic canary.

    Argo's approximateWeightedCanaryStableReplicaCounts with a surge allowed: the candidates are
    ceil and floor of replicas × weight / 100 out of ``replicas`` or ``replicas + 1`` pods, a floor
    of 0 or a canary taking every pod is never a candidate, a tie between floor and ceil goes to
    ceil, and of equally near candidates the first wins."""
    if not 1 <= weight <= 99:
        raise ManifestError(f"A canary weight is 1..99 (got {weight}).")
    if replicas < 1:
        raise ManifestError("A canary needs the target to run at least one replica.")
    exact = replicas * weight / 100
    ceil, floor = math.ceil(exact), math.floor(exact)
    candidates = []
    if ceil < replicas:
        candidates.append((ceil, replicas))
    if exact % 1 != 0.5 and floor != 0:
        candidates.append((floor, replicas))
    candidates.append((ceil, replicas + 1))
    if (replicas + 1) * weight / 100 % 1 != 0.5 and floor != 0:
        candidates.append((floor, replicas + 1))
    canary, total = min(candidates, key=lambda c: abs(c[0] * 100 / c[1] - weight))
    return canary, total - canary


def routed_replicas(replicas: int, weight: int) -> int:
    """A Gateway-weighted canary's pods: enough for its share of the traffic, at least one."""
    if not 1 <= weight <= 99:
        raise ManifestError(f"A canary weight is 1..99 (got {weight}).")
    return max(1, math.ceil(max(replicas, 1) * weight / 100))


def _as_canary(release: Release) -> Release:
    return Release(**{**release.__dict__, "track": "canary"})


def _as_stable(release: Release) -> Release:
    return Release(**{**release.__dict__, "track": "stable"})


def _sizing(target: Target) -> int:
    return target.autoscaling.min_replicas if target.autoscaling is not None else target.replicas


def render_canary(target: Target, stable: Release, canary: Release, weight: int) -> list[dict]:
    """What makes ``canary`` take about ``weight`` % of the model's traffic beside ``stable``, in
    the order they should reach the cluster: the canary's config, Deployment (and Service), the
    stable Service (whose selector decides who shares it), then what shifts the traffic, the
    route's weights or the stable Deployment's smaller count. ``stable`` must be the release
    serving now exactly as it was rendered (same rollout id): its Deployment is rendered again
    with another replica count only, so no stable pod is replaced."""
    stable, canary = _as_stable(stable), _as_canary(canary)
    if (stable.model, stable.environment) != (canary.model, canary.environment):
        raise ManifestError("A canary serves the same model in the same environment as its stable version.")
    m.render(target, stable)  # the same checks
    m.render(target, canary)
    if target.gateway is not None:
        pods = routed_replicas(_sizing(target), weight)
        name = m.resource_name(stable.model, stable.environment)
        route = m.http_route(target, stable, [(name, 100 - weight), (m.canary_name(name), weight)])
        return [
            m.config_map(target, canary),
            m.deployment(target, canary, replicas=pods),
            m.service(target, canary),
            m.service(target, stable),
            route,
        ]
    pods, stable_pods = split_replicas(_sizing(target), weight)
    objects = [m.config_map(target, canary), m.deployment(target, canary, replicas=pods), m.service(target, stable)]
    if target.autoscaling is None:
        objects.append(m.deployment(target, stable, replicas=stable_pods))
    return objects


def stable_traffic(target: Target, stable: Release) -> list[dict]:
    """What gives all the traffic back to the stable version: the route at 100 % to its Service,
    or its Deployment at the target's full count (a basic canary may have scaled it down)."""
    stable = _as_stable(stable)
    if target.gateway is not None:
        return [m.stable_route(target, stable)]
    return [m.deployment(target, stable)]


def is_canary(obj: dict) -> bool:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(m.TRACK_LABEL) == "canary"


def canary_objects(target: Target, stable: Release, objects: list[dict]) -> list[dict]:
    """The canary track's objects among ``objects``, plus its Deployment and Service by name (so a
    canary is removed even when its rendered objects were not kept)."""
    found = [o for o in objects if is_canary(o)]
    name = m.canary_name(m.resource_name(stable.model, stable.environment))
    for kind, api_version in (("Deployment", "apps/v1"), ("Service", "v1")):
        if not any(o["kind"] == kind and o["metadata"]["name"] == name for o in found):
            found.append(
                {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": target.namespace}}
            )
    return found
