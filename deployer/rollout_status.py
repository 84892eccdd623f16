"""`kubectl rollout status` for a Deployment, as a pure function.

The same checks, in the same order, as kubectl's DeploymentStatusViewer
(k8s.io/kubectl/pkg/polymorphichelpers/rollout_status.go), so "done" here means what an
operator's `kubectl rollout status` would say.
"""

from dataclasses import dataclass


class RolloutFailed(Exception):
    """The rollout cannot finish by itself (ProgressDeadlineExceeded): roll back."""


@dataclass(frozen=True)
class RolloutStatus:
    done: bool
    message: str


def _get(obj, *path, default=None):
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
        return RolloutStatus(False, f'Waiting for deployment "{name}" rollout to finish: '
                                    f"{updated} out of {replicas} new replicas have been updated...")
    if status.get("replicas", 0) > updated:
        return RolloutStatus(False, f'Waiting for deployment "{name}" rollout to finish: '
                                    f"{status.get('replicas', 0) - updated} old replicas are pending termination...")
    available = status.get("availableReplicas", 0)
    if available < updated:
        return RolloutStatus(False, f'Waiting for deployment "{name}" rollout to finish: '
                                    f"{available} of {updated} updated replicas are available...")
    return RolloutStatus(True, f'deployment "{name}" successfully rolled out')
