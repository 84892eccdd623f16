"""`kubectl rollout status` for a Deployment, as a pure function.

The same checks, in the same order, as kubectl's DeploymentStatusViewer
(k8s.io/kubectl/pkg/polymorphichelpers/rollout_status.go), so "done" here means what an
operator's `kubectl rollout status` would say.
"""

from dataclasses import dataclass
from typing import Any


class RolloutFailed(Exception):
    """The rollout cannot finish by itself (ProgressDeadlineExceeded, a ReplicaFailure, pods
    that cannot start): roll back."""


@dataclass(frozen=True)
class RolloutStatus:
    done: bool
    message: str


def _get(obj: Any, *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return default
        obj = obj[key]
    return obj


def deployment_status(deployment: dict) -> RolloutStatus:
    """Read a Deployment (as the API server returns it) and say whether its rollout is done.

    Raises RolloutFailed when the Progressing condition reports ProgressDeadlineExceeded.
    """
    name = _get(deployment, "metadata", "name", default="")
    generation = _get(deployment, "metadata", "generation", default=0)
    status = deployment.get("status") or {}
    if generation > status.get("observedGeneration", 0):
        return RolloutStatus(False, "Waiting for deployment spec update to be observed...")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            raise RolloutFailed(f'deployment "{name}" exceeded its progress deadline')
    replicas = _get(deployment, "spec", "replicas")
    updated = status.get("updatedReplicas", 0)
    if replicas is not None and updated < replicas:
        return RolloutStatus(
            False,
            f'Waiting for deployment "{name}" rollout to finish: '
            f"{updated} out of {replicas} new replicas have been updated...",
        )
    if status.get("replicas", 0) > updated:
        return RolloutStatus(
            False,
            f'Waiting for deployment "{name}" rollout to finish: '
            f"{status.get('replicas', 0) - updated} old replicas are pending termination...",
        )
    available = status.get("availableReplicas", 0)
    if available < updated:
        return RolloutStatus(
            False,
            f'Waiting for deployment "{name}" rollout to finish: '
            f"{available} of {updated} updated replicas are available...",
        )
    return RolloutStatus(True, f'deployment "{name}" successfully rolled out')


# Waiting reasons that do not go away by waiting: the kubelet retries them with back-off forever.
# Failed starts in a row that make a running container a crash loop all the same.
CRASHES = 2
STUCK_REASONS = (
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
)


def replica_failure(deployment: dict) -> str | None:
    """Why the Deployment's pods cannot be created, when it says so.

    The ReplicaSet controller sets ReplicaFailure (reason FailedCreate, the API error as message)
    when a pod create is refused (admission such as PodSecurity, a quota, a missing service
    account), and the Deployment controller copies it onto the Deployment
    (pkg/controller/deployment/progress.go getReplicaFailures). Nothing changes that without a
    new template or a change in the namespace, so waiting out the progress deadline helps nobody.
    kubectl rollout status ignores the condition; this is Modelgate's own, earlier verdict."""
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            return f"{condition.get('reason') or 'ReplicaFailure'}: {condition.get('message') or ''}".strip()
    return None


def pod_failure(pod: dict) -> str | None:
    """Why a pod of the new template cannot become ready, if it is stuck rather than slow: a
    container in a back-off the kubelet will not leave by itself, or a pod the scheduler cannot
    place. The text quotes what the pod says: the container's last termination message (a
    crash), its waiting message (a pull), or the scheduler's condition message."""
    name = (pod.get("metadata") or {}).get("name", "")
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            return f"pod {name} is Unschedulable: {condition.get('message') or ''}".strip()
    for kind in ("initContainerStatuses", "containerStatuses"):
        for entry in status.get(kind) or []:
            waiting = (entry.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            last = (entry.get("lastState") or {}).get("terminated") or {}
            if reason is None and last.get("exitCode") and (entry.get("restartCount") or 0) >= CRASHES:
                # Between two back-offs a crash-looping container runs again for a moment.
                reason = "CrashLoopBackOff"
            if reason not in STUCK_REASONS:
                continue
            if reason == "CrashLoopBackOff" and not entry.get("restartCount"):
                continue
            container = f"{'init container' if kind.startswith('init') else 'container'} {entry.get('name')}"
            if last:
                detail = f"last exit code {last.get('exitCode')} ({last.get('reason') or 'Error'})" + (
                    f": {last['message'].strip()}" if (last.get("message") or "").strip() else ""
                )
            else:
                detail = waiting.get("message") or ""
            return f"pod {name}: {container} is {reason}" + (f"; {detail}" if detail else "")
    return None


class RouteRefused(RolloutFailed):
    """The Gateway's controller looked at the route as it is now and said no."""


GATEWAY_GROUP = "gateway.networking.k8s.io"
# What to check when a route condition is False (the reasons listed beside RouteConditionAccepted
# and RouteConditionResolvedRefs in kubernetes-sigs/gateway-api apis/v1/shared_types.go).
_ROUTE_ADVICE = {
    "Accepted": (
        "check that Gateway {gateway} exists and that its listeners allow routes from namespace "
        "{namespace} (spec.listeners[].allowedRoutes) for this hostname"
    ),
    "ResolvedRefs": (
        "check that every backendRef names a Service in namespace {namespace} with that port (the "
        "canary's Service is applied before the route moves traffic to it)"
    ),
}


def _parent_key(ref: dict, namespace: str) -> tuple:
    return (
        ref.get("group", GATEWAY_GROUP),
        ref.get("kind", "Gateway"),
        ref.get("namespace") or namespace,
        ref.get("name"),
        ref.get("sectionName"),
        ref.get("port"),
    )


def route_status(route: dict) -> RolloutStatus:
    """Whether the Gateway named in an HTTPRoute's parentRefs has taken the route as it is now.

    A Gateway API implementation reports on each route it manages in `status.parents[]`, one
    RouteParentStatus per parentRef (parentRef, controllerName, conditions), and "MUST set the
    Accepted condition" (kubernetes-sigs/gateway-api apis/v1/shared_types.go at commit 014ea85:
    RouteParentStatus, RouteStatus). Accepted=True means the Gateway took the route,
    ResolvedRefs=True that every backendRef resolved (RouteConditionAccepted,
    RouteConditionResolvedRefs, same file). A condition speaks for the spec of its
    `observedGeneration` ("the .metadata.generation that the condition was set based upon",
    metav1.Condition in k8s.io/apimachinery pkg/apis/meta/v1/types.go), and the API server bumps a
    custom resource's generation on every spec change, never on a status write (apiextensions
    customresource strategy.go PrepareForUpdate). So the route is in force once both conditions
    are True at an observedGeneration >= metadata.generation.

    Raises RouteRefused when either condition is False for the current generation, quoting its
    reason and message; a False of an older generation is history and is waited past."""
    meta = route.get("metadata") or {}
    name, namespace, generation = meta.get("name", ""), meta.get("namespace", ""), meta.get("generation", 0)
    reported = _get(route, "status", "parents", default=None) or []
    gateways = [
        ref
        for ref in _get(route, "spec", "parentRefs", default=None) or []
        if ref.get("group", GATEWAY_GROUP) == GATEWAY_GROUP and ref.get("kind", "Gateway") == "Gateway"
    ]
    accepted = []
    for ref in gateways:
        gateway = f"{ref.get('namespace') or namespace}/{ref.get('name')}"
        wanted = _parent_key(ref, namespace)
        entries = [e for e in reported if _parent_key(e.get("parentRef") or {}, namespace) == wanted]
        if not entries:
            return RolloutStatus(
                False,
                f"no Gateway controller has accepted HTTPRoute {namespace}/{name} yet: is a controller "
                f"running for Gateway {gateway}?",
            )
        conditions = {c.get("type"): c for entry in entries for c in entry.get("conditions") or []}
        for kind in ("Accepted", "ResolvedRefs"):
            condition = conditions.get(kind) or {}
            seen = condition.get("observedGeneration", 0)
            if seen < generation:
                return RolloutStatus(
                    False,
                    f"Waiting for the controller of Gateway {gateway} to take generation {generation} of "
                    f"HTTPRoute {namespace}/{name} (its {kind} condition is of generation {seen or 'none'})...",
                )
            if condition.get("status") == "False":
                advice = _ROUTE_ADVICE[kind].format(gateway=gateway, namespace=namespace)
                raise RouteRefused(
                    f"Gateway {gateway} refuses HTTPRoute {namespace}/{name} (generation {generation}): "
                    f"{kind}=False, reason {condition.get('reason')!r}: {condition.get('message') or 'no message'}; "
                    f"{advice}"
                )
            if condition.get("status") != "True":
                return RolloutStatus(
                    False,
                    f"Waiting for Gateway {gateway} to decide on HTTPRoute {namespace}/{name}: {kind} is "
                    f"{condition.get('status')} ({condition.get('reason')})...",
                )
        accepted.append(gateway)
    return RolloutStatus(
        True, f"HTTPRoute {namespace}/{name} accepted by Gateway {', '.join(accepted)} at generation {generation}"
    )
