"""A canary driven end to end in real time (issue 17, "Done when"): loadgen traffic through the
environment's URL, the metrics collector, celery beat's canary controller and a worker, all
played by the test in one loop, while the served split is measured from per-track request
counts.

Nothing here decides anything: the pipeline, the analysis, the services, MLflow and the
backend are the real ones. The loop only does, in order and every half second, what the
processes of a deployment do (scrape, beat, worker) and reads the counters between them."""

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from deployer import loadgen
from deployer.metrics.collect import scrape_deployment
from deployer.models import Rollout
from deployer.tasks import reconcile_canaries

# {replica: (track, requests it has counted since it started)}
Counts = dict[str, tuple[str, int]]


class Traffic(threading.Thread):
    """deployer.loadgen at a steady rate until stopped, every answer kept with its time."""

    def __init__(self, send: Callable[[dict], int], signature: dict | None, rps: float = 40):
        super().__init__(daemon=True)
        self.send, self.signature, self.rps = send, signature, rps
        self.answers: list[tuple[float, int]] = []  # (monotonic time, HTTP status; 0: no answer)
        self.halt = threading.Event()

    def _send(self, body: dict) -> int:
        try:
            status = self.send(body)
        except Exception:  # a refused or reset connection: the client saw no answer
            status = 0
        self.answers.append((time.monotonic(), status))
        return status

    def run(self):
        seed = 0
        while not self.halt.is_set():
            loadgen.run(self._send, signature=self.signature, rps=self.rps, duration=1.0, seed=seed)
            seed += 1

    def stop(self) -> None:
        self.halt.set()
        self.join(30)

    def statuses(self, since: float = 0.0) -> dict[int, int]:
        found: dict[int, int] = defaultdict(int)
        for at, status in list(self.answers):
            if at >= since:
                found[status] += 1
        return dict(found)


@dataclass
class Segment:
    """The traffic served while the canary had one weight."""

    weight: int
    requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def canary_share(self) -> float:
        total = sum(self.requests.values())
        return 100.0 * self.requests.get("canary", 0) / total if total else float("nan")

    def __repr__(self) -> str:
        return f"Segment(weight={self.weight}, requests={dict(self.requests)}, canary={self.canary_share:.1f} %)"


class CanaryDriver:
    """Plays the metrics collector, beat and a worker for one deployment's canary, and splits
    the per-track request counts (``counts``: read from the model servers themselves) by the
    canary weight in force when they were served."""

    def __init__(self, deployment_id: int, sent_tasks, counts: Callable[[], Counts]):
        self.deployment_id, self.sent_tasks, self.counts = deployment_id, sent_tasks, counts
        self.segments: list[Segment] = []
        self.weights_seen: list[int] = []
        self._last: dict[str, int] = {}
        self._weight: int | None = None

    def _account(self, rollout: Rollout | None) -> None:
        """Counts served since the last look go to the weight in force at the last look: a
        weight changes at the end of a worker's step (once the router or the pods took it).
        A look during which the weight changed goes to no segment: its traffic was served
        partly before the change and partly while it was being made (pods starting or
        stopping, a route rewritten), at neither weight."""
        now = self.counts()
        weight = None
        if rollout is not None and rollout.is_canary and rollout.state in Rollout.ACTIVE:
            weight = (rollout.canary or {}).get("weight")
        if self._weight is not None and weight == self._weight:
            if not self.segments or self.segments[-1].weight != self._weight:
                self.segments.append(Segment(self._weight))
            for replica, (track, requests) in now.items():
                before = self._last.get(replica)
                if before is not None and requests >= before:
                    self.segments[-1].requests[track] += requests - before
        self._last = {replica: requests for replica, (_, requests) in now.items()}
        if weight is not None and (not self.weights_seen or self.weights_seen[-1] != weight):
            self.weights_seen.append(weight)
        self._weight = weight

    def run(self, rollout_id: int, until: Callable[[Rollout], bool], timeout: float) -> Rollout:
        deadline = time.monotonic() + timeout
        while True:
            scrape_deployment(self.deployment_id)
            reconcile_canaries()
            self.sent_tasks.run_all()
            rollout = Rollout.objects.get(pk=rollout_id)
            self._account(rollout)
            if until(rollout):
                return rollout
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"rollout {rollout_id} did not get there in {timeout:.0f} s: {rollout.state} "
                    f"{[(s['name'], s['state'], s.get('detail')) for s in rollout.steps]}"
                )
            time.sleep(0.5)

    def split(self, weight: int) -> Segment:
        found = [s for s in self.segments if s.weight == weight]
        assert len(found) == 1, self.segments
        return found[0]
