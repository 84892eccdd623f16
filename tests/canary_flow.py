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
from registry.promotions.models import PromotionRequest

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
    canary weight in force when they were served.

    ``weight``, when given, reads the weight the data plane applies now (the local router's
    routes, an HTTPRoute's weights): a sampler thread reads it and the counts every 0.2 s, so a
    segment is cut where the traffic changed, even in the middle of a worker's task (one task
    sets step 2's weight, another promotes, ends the canary and moves the alias). Without it
    the weight is the rollout's, read between tasks."""

    def __init__(
        self,
        deployment_id: int,
        sent_tasks,
        counts: Callable[[], Counts],
        weight: Callable[[], int | None] | None = None,
    ):
        self.deployment_id, self.sent_tasks, self.counts, self.weight = deployment_id, sent_tasks, counts, weight
        self.segments: list[Segment] = []
        self.weights_seen: list[int] = []
        self._last: dict[str, int] = {}
        self._weight: int | None = None
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def _account(self, weight: int | None) -> None:
        """Counts served since the last look go to the weight in force then and now. A look
        during which the weight changed goes to no segment: its traffic was served partly
        before the change and partly while it was being made (pods starting or stopping, a
        route rewritten), at neither weight."""
        with self._lock:
            now = self.counts()
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

    def _sample(self) -> None:
        assert self.weight is not None
        while not self._halt.wait(0.2):
            self._account(self.weight())

    def _rollout_weight(self, rollout: Rollout | None) -> None:
        if self.weight is None:
            active = rollout is not None and rollout.is_canary and rollout.state in Rollout.ACTIVE
            self._account((rollout.canary or {}).get("weight") if active and rollout else None)

    def run(self, rollout: "int | PromotionRequest", until: Callable[[Rollout], bool], timeout: float) -> Rollout:
        """Loop until ``until(rollout)``; ``rollout`` is its id, or the approved request whose
        rollout the worker's first task creates."""
        found = (
            Rollout.objects.filter(pk=rollout) if isinstance(rollout, int) else Rollout.objects.filter(request=rollout)
        )
        deadline = time.monotonic() + timeout
        sampler = None
        if self.weight is not None:
            self._halt.clear()
            self._account(self.weight())
            sampler = threading.Thread(target=self._sample, daemon=True)
            sampler.start()
        try:
            while True:
                scrape_deployment(self.deployment_id)
                reconcile_canaries()
                self.sent_tasks.run_all()
                current = found.first()
                self._rollout_weight(current)
                if current is not None and until(current):
                    return current
                if time.monotonic() > deadline:
                    said = current and [(s["name"], s["state"], s.get("detail")) for s in current.steps]
                    raise AssertionError(f"{rollout!r} did not get there in {timeout:.0f} s: {said}")
                time.sleep(0.5)
        finally:
            if sampler is not None:
                self._halt.set()
                sampler.join(10)
                self._account(self.weight())

    def split(self, weight: int) -> Segment:
        found = [s for s in self.segments if s.weight == weight]
        assert len(found) == 1, self.segments
        return found[0]


def run_under_load(
    traffic: Traffic,
    driver: CanaryDriver,
    start: Callable[[], "int | PromotionRequest"],
    *,
    timeout: float,
    after: Callable[[], None] = lambda: None,
    linger: float = 2.0,
) -> tuple[Rollout, float]:
    """Traffic from before ``start()`` (which requests and approves the canary, giving its
    rollout or request) until ``linger`` seconds after the rollout ended, the driver playing
    the collector, beat and the worker all along; ``after()`` runs as soon as it ended.
    Returns the ended rollout and when it was seen ended (monotonic)."""
    traffic.start()
    try:
        rollout = driver.run(start(), lambda r: r.state not in Rollout.ACTIVE, timeout=timeout)
        ended = time.monotonic()
        after()
        driver.run(rollout.pk, lambda r: bool(traffic.answers) and traffic.answers[-1][0] > ended + linger, 30)
    finally:
        traffic.stop()
    return rollout, ended
