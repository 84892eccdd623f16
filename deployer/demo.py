"""The embedded default serves every environment on this machine."""

from deployer.models import DeploymentTarget
from registry.promotions.models import Environment


def seed_targets() -> None:
    """A local target for each environment that has none (an admin may switch it to Kubernetes)."""
    for environment in Environment.objects.filter(target__isnull=True):
        DeploymentTarget.objects.create(environment=environment, backend=DeploymentTarget.LOCAL)
