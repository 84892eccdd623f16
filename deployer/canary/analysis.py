"""Judge a canary step: the canary's numbers against the stable version's over the same
window, by the plan's rules (``registry.promotions.canary_plan.Analysis``). Pure: the
controller reads both windows (``deployer.metrics.series.track_window``) and records the
verdict, whose reason quotes both sides' numbers.

- Fewer canary requests than ``min_requests``: inconclusive (the plan says whether that
  waits, passes or fails: ``next_action``).
- Error rates are compared in percentage points: the canary's at most the stable's plus
  ``max_error_rate_increase_pp``. A stable track that served nothing counts as 0 %.
- p95 latency as a ratio: the canary's at most ``max_p95_ratio`` × the stable's. Without a
  stable p95 (or a canary p95) only the absolute ceilings apply.
- The absolute ceilings (``max_error_rate_pct``, ``max_p95_ms``) apply whatever stable does.
"""

from dataclasses import dataclass, field
from typing import Any, Literal

from registry.promotions.canary_plan import Analysis, number

Result = Literal["pass", "fail", "inconclusive"]
Action = Literal["advance", "abort", "wait"]

# Rates are computed from counts; a rate equal to its limit must not fail on float noise.
_EPSILON = 1e-9


@dataclass(frozen=True)
class TrackWindow:
    """One track's traffic over a step's window."""

    requests: int
    errors: int
    p95_ms: float | None

    @property
    def error_rate_pct(self) -> float | None:
        return None if self.requests <= 0 else 100.0 * self.errors / self.requests

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate_pct": self.error_rate_pct,
            "p95_ms": self.p95_ms,
        }


@dataclass(frozen=True)
class Verdict:
    result: Result
    reason: str
    numbers: dict[str, Any] = field(default_factory=dict)  # JSON: stored on the rollout with the verdict


def _pct(value: float) -> str:
    """42.0 -> "42.0", 0.41666 -> "0.42": one decimal unless that would hide a difference."""
    return f"{value:.1f}" if round(value, 1) == value else f"{value:.2f}"


def _rate(window: TrackWindow) -> str:
    """ "42.0 % (21/50)"."""
    return f"{_pct(window.error_rate_pct or 0.0)} % ({window.errors}/{window.requests})"


def _ms(value: float) -> str:
    return f"{number(value)} ms"


def judge(analysis: Analysis, stable: TrackWindow, canary: TrackWindow) -> Verdict:
    """The verdict on one step. Every failing rule is named in the reason, not just the first."""
    stable_rate = stable.error_rate_pct or 0.0  # no stable traffic: judged against a clean 0 %
    rate_limit = stable_rate + analysis.max_error_rate_increase_pp
    p95_limit = None
    if stable.p95_ms is not None and stable.p95_ms > 0:
        p95_limit = stable.p95_ms * analysis.max_p95_ratio
    numbers: dict[str, Any] = {
        "stable": stable.as_dict(),
        "canary": canary.as_dict(),
        "limits": {"error_rate_pct": rate_limit, "p95_ms": p95_limit},
        "rules": analysis.to_dict(),
    }
    if canary.requests < analysis.min_requests:
        return Verdict(
            "inconclusive",
            f"canary served {canary.requests} request{'s' if canary.requests != 1 else ''}, fewer than the "
            f"{analysis.min_requests} a step needs (stable served {stable.requests})",
            numbers,
        )
    failed: list[str] = []
    passed: list[str] = []

    canary_rate = canary.error_rate_pct or 0.0
    over = canary_rate > rate_limit + _EPSILON
    stable_side = f"stable {_rate(stable)}" + (" (no stable traffic)" if stable.requests <= 0 else "")
    (failed if over else passed).append(
        f"canary error rate {_rate(canary)} {'>' if over else '≤'} {stable_side} + "
        f"{number(analysis.max_error_rate_increase_pp)} pp"
    )
    ceiling = analysis.max_error_rate_pct
    if ceiling is not None and canary_rate > ceiling + _EPSILON:
        failed.append(f"canary error rate {_rate(canary)} > ceiling {number(ceiling)} %")

    if canary.p95_ms is None:
        passed.append("no canary p95 to judge latency by")
    else:
        if p95_limit is not None and stable.p95_ms is not None:
            over = canary.p95_ms > p95_limit + _EPSILON
            (failed if over else passed).append(
                f"canary p95 {_ms(canary.p95_ms)} {'>' if over else '≤'} {number(analysis.max_p95_ratio)} × "
                f"stable {_ms(stable.p95_ms)} ({_ms(p95_limit)})"
            )
        elif analysis.max_p95_ms is None:
            passed.append("no stable p95 to compare latency with")
        if analysis.max_p95_ms is not None:
            over = canary.p95_ms > analysis.max_p95_ms + _EPSILON
            (failed if over else passed).append(
                f"canary p95 {_ms(canary.p95_ms)} {'>' if over else '≤'} ceiling {_ms(analysis.max_p95_ms)}"
            )

    if failed:
        return Verdict("fail", "; ".join(failed), numbers)
    return Verdict("pass", "; ".join(passed), numbers)


def next_action(analysis: Analysis, verdict: Verdict) -> Action:
    """What the controller does with a verdict: an inconclusive one waits, passes or fails
    as the plan says."""
    result = verdict.result
    if result == "inconclusive":
        if analysis.inconclusive == "wait":
            return "wait"
        result = analysis.inconclusive
    return "advance" if result == "pass" else "abort"
