"""What a backend may raise, sorted by what the rollout pipeline should do about it.

TransientError: worth a retry with backoff (API 5xx, 409 conflict, connection reset,
timeouts). PermanentError: retrying will not help (bad manifest, forbidden, missing
credentials, a field the API server's schema does not know even when it answers 500); the
rollout fails or rolls back at once. The Kubernetes backend decides between the two from the
API's Status reason first and the HTTP code second (backends/kubernetes_api.py `_classify`).
RolloutFailed (from rollout_status) means the rollout cannot finish by itself: the cluster
gave up on it, or its pods are refused or stuck.
"""

from deployer.rollout_status import RolloutFailed  # noqa: F401 - re-exported for backends


class BackendError(Exception):
    """Base of every error a backend raises."""


class TransientError(BackendError):
    """A temporary failure: the same call may succeed if retried later."""


class PermanentError(BackendError):
    """The call cannot succeed as made: fix the target or the manifests first."""


class RolloutTimeout(BackendError):
    """The rollout did not finish within the time the pipeline allowed."""
