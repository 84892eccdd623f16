"""The demo's environments: what `make run` seeds on a fresh database (registry/demo.py seeds
the users and the model; the promotion workflow's own pieces are seeded here)."""

from .models import Environment


def seed_environments() -> None:
    """staging, then production (protected; it asks for accuracy >= 0.92), one approval each."""
    if Environment.objects.exists():
        return
    Environment.objects.create(name="staging", position=1, alias="staging", required_approvals=1)
    Environment.objects.create(
        name="production",
        position=2,
        alias="production",
        required_approvals=1,
        protected=True,
        metric_thresholds=[{"metric": "accuracy", "op": ">=", "value": 0.92}],
    )
