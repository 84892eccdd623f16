"""Judge a canary step: the canary's traffic against the stable version's over the same window.

Stand-in written by H4 (the controller) with the names and signatures of CANARY.md; the lead
keeps H1's version.
"""

from dataclasses import dataclass, field
from typing import Literal

from registry.promotions.canary_plan import Analysis


@dataclass(frozen=True)
class TrackWindow:
    requests: int
    errors: int
    p95_ms: float | None

    @property
    def error_rate_pct(self) -> float:
        return 100.0 * self.errors / self.requests if self.requests else 0.0

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate_pct": round(self.error_rate_pct, 3),
            "p95_ms": None if self.p95_ms is None else round(self.p95_ms, 3),
        }


@dataclass(frozen=True)
class Verdict:
    result: Literal["pass", "fail", "inconclusive"]
    reason: str
    numbers: dict = field(default_factory=dict)


def _rate(window: TrackWindow) -> str:
    return f"{window.error_rate_pct:.1f} % ({window.errors}/{window.requests})"


def judge(analysis: Analysis, stable: TrackWindow, canary: TrackWindow) -> Verdict:
    numbers = {"stable": stable.as_dict(), "canary": canary.as_dict()}
    if canary.requests < analysis.min_requests:
        return Verdict(
            "inconclusive",
            f"canary served {canary.requests} requests, fewer than the {analysis.min_requests} the plan needs",
            numbers,
        )
    limit = stable.error_rate_pct + analysis.max_error_rate_increase_pp
    errors = f"canary error rate {_rate(canary)}"
    if canary.error_rate_pct > limit:
        reason = f"{errors} > stable {_rate(stable)} + {analysis.max_error_rate_increase_pp} pp"
        return Verdict("fail", reason, numbers)
    if analysis.max_error_rate_pct is not None and canary.error_rate_pct > analysis.max_error_rate_pct:
        return Verdict("fail", f"{errors} > the ceiling of {analysis.max_error_rate_pct} %", numbers)
    parts = [f"{errors} ≤ stable {_rate(stable)} + {analysis.max_error_rate_increase_pp} pp"]
    if canary.p95_ms is not None and stable.p95_ms:
        ceiling = stable.p95_ms * analysis.max_p95_ratio
        latency = f"canary p95 {canary.p95_ms:.1f} ms"
        if canary.p95_ms > ceiling:
            reason = f"{latency} > {analysis.max_p95_ratio} × stable {stable.p95_ms:.1f} ms"
            return Verdict("fail", reason, numbers)
        parts.append(f"{latency} ≤ {analysis.max_p95_ratio} × stable {stable.p95_ms:.1f} ms")
    if canary.p95_ms is not None and analysis.max_p95_ms is not None and canary.p95_ms > analysis.max_p95_ms:
        return Verdict("fail", f"canary p95 {canary.p95_ms:.1f} ms > the ceiling of {analysis.max_p95_ms} ms", numbers)
    return Verdict("pass", "; ".join(parts), numbers)
