"""A small load generator: predict requests at a steady rate, built from the version's
signature, with what it measured (so the charts can be checked against it)."""

import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from deployer.smoke import example_request


@dataclass
class LoadReport:
    sent: int = 0
    ok: int = 0
    errors: int = 0
    latencies_ms: list = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0

    @property
    def seconds(self) -> float:
        return max(1e-9, self.finished - self.started)

    @property
    def rps(self) -> float:
        return self.sent / self.seconds

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[round(q * 100) - 1]

    def lines(self) -> list[str]:
        p = {q: self.percentile(q) for q in (0.5, 0.95, 0.99)}
        fmt = lambda v: "-" if v is None else f"{v:.1f} ms"  # noqa: E731
        return [
            f"sent {self.sent} requests in {self.seconds:.1f} s: {self.rps:.1f} requests/s",
            f"ok {self.ok}, errors {self.errors} ({(self.errors / self.sent * 100) if self.sent else 0:.1f} %)",
            f"latency p50 {fmt(p[0.5])}, p95 {fmt(p[0.95])}, p99 {fmt(p[0.99])} (as seen by the client)",
        ]


def request_body(signature: dict | None, rng: random.Random) -> dict:
    """A valid request for the signature, with random values so the model does real work."""
    body = example_request(signature) or {"instances": [[0.0]]}

    def jitter(value):
        if isinstance(value, list):
            return [jitter(v) for v in value]
        if isinstance(value, dict):
            return {k: jitter(v) for k, v in value.items()}
        return round(rng.uniform(0, 8), 3) if isinstance(value, float) else value

    return jitter(body)


def run(
    send: Callable[[dict], int],
    *,
    signature: dict | None,
    rps: float,
    duration: float,
    bad_fraction: float = 0.0,
    workers: int = 4,
    seed: int = 0,
) -> LoadReport:
    """Call send(body) -> HTTP status at ``rps`` for ``duration`` seconds. A share of
    ``bad_fraction`` requests is malformed on purpose (TF Serving answers 400)."""
    report = LoadReport()
    lock = threading.Lock()
    rng = random.Random(seed)
    total = max(1, int(rps * duration))
    schedule = iter(range(total))
    report.started = time.monotonic()

    def worker():
        local = random.Random(rng.random())
        while True:
            with lock:
                index = next(schedule, None)
            if index is None:
                return
            delay = report.started + index / rps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            bad = local.random() < bad_fraction
            body = {"instances": "not a tensor"} if bad else request_body(signature, local)
            began = time.monotonic()
            try:
                status = send(body)
            except Exception:  # a refused connection is an error the report must count, not a crash
                status = 0
            elapsed = (time.monotonic() - began) * 1000
            with lock:
                report.sent += 1
                if status == 200:
                    report.ok += 1
                    report.latencies_ms.append(elapsed)
                else:
                    report.errors += 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report.finished = time.monotonic()
    return report
