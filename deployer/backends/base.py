"""What the rollout pipeline needs from a place that serves models.

Two implementations: ``local.LocalBackend`` (a model-server process on this machine) and
``kubernetes.KubernetesBackend`` (TF Serving on Kubernetes). The pipeline only speaks this
interface, so both go through exactly the same steps.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from deployer.manifests import Release


@dataclass(frozen=True)
class Answer:
    """One serving replica's answer to a TF Serving REST call."""

    replica: str
    status: int
    body: dict | str


class ServingBackend(Protocol):
    def render(self, release: Release) -> list[dict]:
        """The objects that make ``release`` serve (stored on the rollout as its manifests)."""

    def prepare(self, release: Release, version) -> str:
        """Make the version's files available to the model server; returns what was done."""

    def apply(self, objects: list[dict], *, previous: list[dict] | None = None) -> None:
        """Create or update the objects. ``previous`` are the objects serving now."""

    def wait(self, objects: list[dict], *, timeout: float, progress: Callable[[str], None]) -> str:
        """Block until the applied objects serve; raise RolloutFailed or RolloutTimeout."""

    def finalize(self, objects: list[dict]) -> None:
        """The new revision is verified: drop what only the transition needed."""

    def render_canary(self, stable: Release, canary: Release, weight: int) -> list[dict]:
        """The objects (pure) that make ``canary`` take about ``weight`` % of the traffic of the
        environment's address beside ``stable``. Applied with ``apply``, awaited with ``wait``;
        re-applying with another weight changes the split, and applying twice is harmless."""

    def canary_end(self, stable: Release, objects: list[dict]) -> None:
        """All traffic back to ``stable``, the canary's ``objects`` deleted (what is gone is fine)."""

    def call(self, release: Release, method: str, path: str, body: dict | None = None) -> list[Answer]:
        """Send a TF Serving REST call to every replica serving ``release`` (only the canary's
        replicas when ``release.track`` is canary)."""

    def call_one(self, release: Release, replica: str, method: str, path: str, body: dict | None = None) -> int:
        """Send one call to one replica (named as in Answer.replica); returns the HTTP status."""

    def health(self, name: str) -> dict:
        """Replica health: desired, updated, ready, available, pods (phase, restarts, reason) and
        recent warning events (OOMKilled, ImagePullBackOff, CrashLoopBackOff...)."""

    def read(self, objects: list[dict]) -> list[dict | None]:
        """The live state of each object, for drift detection (None: it is gone)."""

    def remove(self, objects: list[dict]) -> None:
        """Delete the objects; what is already gone is fine."""
