"""What the canary tests share: a backend that behaves as CANARY.md says a backend does, the
traffic each track measured, a clock the test moves, and a canary request approved.

The backend is a stand-in for the cluster only: the pipeline, the services, MLflow (the
alias), the database and the tasks are the real ones."""

from datetime import timedelta

import pytest
from django.utils import timezone

from deployer import pipeline
from deployer.backends.base import Answer
from deployer.canary.analysis import TrackWindow
from deployer.metrics import series
from deployer.models import Rollout
from deployer.tasks import reconcile_canaries
from registry.promotions import services as promotions
from registry.promotions.models import PromotionRequest

PLAN = {
    "strategy": "canary",
    "steps": [{"weight": 10, "seconds": 300}, {"weight": 50, "seconds": 600}],
    "analysis": {
        "min_requests": 100,
        "max_error_rate_increase_pp": 1.0,
        "max_p95_ratio": 1.5,
        "max_error_rate_pct": None,
        "max_p95_ms": None,
        "inconclusive": "wait",
    },
}


def plan(**analysis) -> dict:
    return {**PLAN, "analysis": {**PLAN["analysis"], **analysis}}


class FakeBackend:
    """The backend interface of deployer/backends/base.py as CANARY.md extends it: a stable
    track serving one version, a canary track whose share ``render_canary`` sets, calls with
    ``release.track == "canary"`` reaching only the canary, ``canary_end`` sending everything
    back to stable. ``log`` records what changed, in order."""

    def __init__(self):
        self.stable: int | None = None
        self.canary: tuple[int, int] | None = None  # (version, weight)
        self.log: list[tuple] = []
        self.on_canary_call = None  # a hook a test sets: runs when the canary is verified

    def render(self, release):
        name = f"{release.model}-{release.environment}"
        return [{"apiVersion": "fake/v1", "kind": "Server", "metadata": {"name": name}, "spec": {"v": release.version}}]

    def render_canary(self, stable, canary, weight):
        name = f"{canary.model}-{canary.environment}-canary"
        spec = {"v": canary.version, "stable": stable.version, "weight": weight}
        return [{"apiVersion": "fake/v1", "kind": "Canary", "metadata": {"name": name}, "spec": spec}]

    def prepare(self, release, version):
        return f"v{release.version} laid out"

    def apply(self, objects, *, previous=None):
        for obj in objects:
            if obj["kind"] == "Canary":
                self.canary = (obj["spec"]["v"], obj["spec"]["weight"])
                self.log.append(("weight", obj["spec"]["weight"]))
            else:
                self.stable = obj["spec"]["v"]
                self.log.append(("stable", obj["spec"]["v"]))

    def wait(self, objects, *, timeout, progress):
        return "ready"

    def finalize(self, objects):
        pass

    def canary_end(self, stable, objects):
        self.canary = None
        self.log.append(("canary_end", stable.version))

    def call(self, release, method, path, body=None):
        if release.track == "canary":
            if self.on_canary_call:
                self.on_canary_call()
            serving = self.canary[0] if self.canary else None
        else:
            serving = self.stable
        if serving != release.version:
            return []
        if path.endswith(":predict"):
            return [Answer(replica=f"{release.track}-0", status=200, body={"predictions": [[0.1, 0.2, 0.7]]})]
        status = {"model_version_status": [{"version": str(release.version), "state": "AVAILABLE"}]}
        return [Answer(replica=f"{release.track}-0", status=200, body=status)]

    def call_one(self, release, replica, method, path, body=None):
        return 200

    def read(self, objects):
        return list(objects)

    def remove(self, objects):
        self.stable = None
        self.log.append(("removed",))


@pytest.fixture
def backend(monkeypatch):
    fake = FakeBackend()
    monkeypatch.setattr(pipeline, "backend_for", lambda deployment: fake)
    return fake


@pytest.fixture
def traffic(monkeypatch):
    """What each track served in a step's window (``series.track_window``): a test sets
    ``traffic["canary"]``; ``traffic.asked`` lists the windows the analysis asked for."""

    class Traffic(dict):
        asked: list

    windows = Traffic(stable=TrackWindow(requests=480, errors=0, p95_ms=10.0))
    windows["canary"] = TrackWindow(requests=120, errors=0, p95_ms=11.0)
    windows.asked = []

    def track_window(deployment_id, track, start, end):
        windows.asked.append((track, start, end))
        return windows[track]

    monkeypatch.setattr(series, "track_window", track_window)
    return windows


class Clock:
    def __init__(self):
        self.offset = timedelta()

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch):
    """Every ``timezone.now()`` in this process (the pipeline, the services, auto_now) moves
    with ``clock.advance``: a step of minutes passes in no time."""
    fake = Clock()
    real = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real() + fake.offset)
    return fake


def promote(engineer, approver, version, environment, sent_tasks, *, with_plan=None) -> PromotionRequest:
    """Request, approve (with the plan the request carries) and let a worker run what was queued."""
    req = promotions.promotion_request(
        actor=engineer, version=version, environment=environment, justification="better accuracy"
    )
    if with_plan is not None:
        # What the request snapshots from the environment's policy when it is made (CANARY.md).
        PromotionRequest.objects.filter(pk=req.pk).update(plan=with_plan)
    promotions.promotion_approve(actor=approver, request_id=req.pk, comment="ok")
    sent_tasks.run_all()
    req.refresh_from_db()
    return req


def time_passes(clock, rollout: Rollout, sent_tasks) -> Rollout:
    """The clock reaches the canary's next check; the controller (beat) queues it and a worker
    runs it. Returns the rollout as it is afterwards."""
    rollout.refresh_from_db()
    assert rollout.next_check_at is not None, rollout.steps
    clock.advance((rollout.next_check_at - timezone.now()).total_seconds() + 1)
    assert reconcile_canaries() == [rollout.pk]
    sent_tasks.run_all()
    rollout.refresh_from_db()
    return rollout


def step_states(rollout: Rollout) -> dict[str, str]:
    return {s["name"]: s["state"] for s in rollout.steps}
