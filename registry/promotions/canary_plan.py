"""A canary rollout plan: traffic steps, and how each step's canary is judged against the
stable version. Pure (no Django): the environment's policy stores the plan as JSON
(``Environment.canary_plan``), a promotion request snapshots it when made
(``PromotionRequest.plan``), and the deployer follows that snapshot.

    {"steps": [{"weight": 10, "seconds": 300}, {"weight": 50, "seconds": 600}],
     "analysis": {"min_requests": 100, "max_error_rate_increase_pp": 1.0, "max_p95_ratio": 1.5,
                  "max_error_rate_pct": null, "max_p95_ms": null, "inconclusive": "wait"}}

Weights rise strictly, each 1..99; after the last step the new version takes all traffic
(the promotion). ``parse`` is the one check of that shape: a ``PlanError`` names the field
at fault (``canary_plan.steps[1].weight: must be greater than the step before (10)``).
"""

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

ALL_AT_ONCE: Final = "all_at_once"
CANARY: Final = "canary"
STRATEGIES: Final = (ALL_AT_ONCE, CANARY)

Inconclusive = Literal["wait", "pass", "fail"]
INCONCLUSIVE: Final[tuple[Inconclusive, ...]] = ("wait", "pass", "fail")

MIN_SECONDS: Final = 5  # short steps are for tests and demos
MAX_SECONDS: Final = 7 * 24 * 3600
MAX_STEPS: Final = 10
ROOT: Final = "canary_plan"


class PlanError(ValueError):
    """A plan that cannot be followed. ``path`` names the field (``canary_plan.steps[1].weight``)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class CanaryStep:
    weight: int  # the canary's share of the traffic, in percent
    seconds: int  # how long the step holds before it is judged


@dataclass(frozen=True)
class Analysis:
    min_requests: int = 100  # fewer canary requests in a step: inconclusive
    max_error_rate_increase_pp: float = 1.0  # over the stable version's, in percentage points
    max_p95_ratio: float = 1.5  # times the stable version's p95
    max_error_rate_pct: float | None = None  # absolute ceiling, whatever stable does
    max_p95_ms: float | None = None  # absolute ceiling, whatever stable does
    inconclusive: Inconclusive = "wait"  # wait for more requests, or pass, or fail the step

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_requests": self.min_requests,
            "max_error_rate_increase_pp": self.max_error_rate_increase_pp,
            "max_p95_ratio": self.max_p95_ratio,
            "max_error_rate_pct": self.max_error_rate_pct,
            "max_p95_ms": self.max_p95_ms,
            "inconclusive": self.inconclusive,
        }

    def describe(self) -> str:
        """What follows "judged on": the rules in words."""
        rules = [
            f"error rate at most stable's + {number(self.max_error_rate_increase_pp)} pp",
            f"p95 at most {number(self.max_p95_ratio)} × stable's",
        ]
        if self.max_error_rate_pct is not None:
            rules.append(f"error rate at most {number(self.max_error_rate_pct)} %")
        if self.max_p95_ms is not None:
            rules.append(f"p95 at most {number(self.max_p95_ms)} ms")
        fewer = {"wait": "waits for more", "pass": "passes", "fail": "fails"}
        return (
            f"at least {self.min_requests} canary request{'s' if self.min_requests != 1 else ''} per step: "
            f"{', '.join(rules)}; with fewer, the step {fewer[self.inconclusive]}"
        )


@dataclass(frozen=True)
class CanaryPlan:
    steps: tuple[CanaryStep, ...]
    analysis: Analysis = field(default_factory=Analysis)

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": [{"weight": s.weight, "seconds": s.seconds} for s in self.steps],
            "analysis": self.analysis.to_dict(),
        }

    def describe(self) -> str:
        """ "10 % for 5 min, then 50 % for 10 min, then all"."""
        return ", then ".join([step_text(s.weight, s.seconds) for s in self.steps] + ["all"])

    @property
    def total_seconds(self) -> int:
        return sum(s.seconds for s in self.steps)


# --- reading a plan ---------------------------------------------------------------


def parse(data: object) -> CanaryPlan:
    """The plan in ``data`` (JSON as stored or sent), checked whole. Raises PlanError."""
    if not isinstance(data, Mapping):
        raise PlanError(ROOT, 'must be an object with "steps" and "analysis"')
    _known_keys(data, ("steps", "analysis"), ROOT)
    steps_data = data.get("steps")
    if not isinstance(steps_data, list) or not steps_data:
        raise PlanError(f"{ROOT}.steps", 'must be a list of at least one step, e.g. [{"weight": 10, "seconds": 300}]')
    if len(steps_data) > MAX_STEPS:
        raise PlanError(f"{ROOT}.steps", f"at most {MAX_STEPS} steps (there are {len(steps_data)})")
    steps: list[CanaryStep] = []
    for index, item in enumerate(steps_data):
        path = f"{ROOT}.steps[{index}]"
        if not isinstance(item, Mapping):
            raise PlanError(path, 'must be an object with "weight" and "seconds"')
        _known_keys(item, ("weight", "seconds"), path)
        weight = _whole(item, "weight", path, low=1, high=99, unit="percent; after the last step the canary takes all")
        if steps and weight <= steps[-1].weight:
            raise PlanError(f"{path}.weight", f"must be greater than the step before ({steps[-1].weight})")
        seconds = _whole(item, "seconds", path, low=MIN_SECONDS, high=MAX_SECONDS, unit="seconds")
        steps.append(CanaryStep(weight=weight, seconds=seconds))
    analysis_data = data.get("analysis")
    analysis = _analysis({} if analysis_data is None else analysis_data)
    return CanaryPlan(steps=tuple(steps), analysis=analysis)


def _analysis(data: object) -> Analysis:
    path = f"{ROOT}.analysis"
    if not isinstance(data, Mapping):
        raise PlanError(path, "must be an object")
    default = Analysis()
    _known_keys(data, tuple(default.to_dict()), path)
    inconclusive = data.get("inconclusive", default.inconclusive)
    if inconclusive not in INCONCLUSIVE:
        raise PlanError(f"{path}.inconclusive", f"must be one of {', '.join(INCONCLUSIVE)}")
    return Analysis(
        min_requests=_whole(
            data, "min_requests", path, low=1, high=10**9, unit="requests", default=default.min_requests
        ),
        max_error_rate_increase_pp=_real(
            data, "max_error_rate_increase_pp", path, low=0, high=100, default=default.max_error_rate_increase_pp
        ),
        max_p95_ratio=_real(data, "max_p95_ratio", path, low=1, high=1000, default=default.max_p95_ratio),
        max_error_rate_pct=_optional_real(data, "max_error_rate_pct", path, low=0, high=100),
        max_p95_ms=_optional_real(data, "max_p95_ms", path, low=0, high=3_600_000, above_low=True),
        inconclusive=cast(Inconclusive, inconclusive),
    )


def _known_keys(data: Mapping[Any, Any], known: tuple[str, ...], path: str) -> None:
    for key in data:
        if key not in known:
            raise PlanError(f"{path}.{key}", f"unknown setting (known: {', '.join(known)})")


_MISSING = object()


def _whole(
    data: Mapping[Any, Any], key: str, path: str, *, low: int, high: int, unit: str, default: object = _MISSING
) -> int:
    value = data.get(key, default)
    if value is _MISSING:
        raise PlanError(f"{path}.{key}", "is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise PlanError(f"{path}.{key}", f"must be a whole number, not {value!r}")
    if not low <= value <= high:
        raise PlanError(f"{path}.{key}", f"must be from {low} to {high} ({unit}), not {value}")
    return value


def _real(data: Mapping[Any, Any], key: str, path: str, *, low: float, high: float, default: float) -> float:
    value = _optional_real(data, key, path, low=low, high=high, default=default)
    if value is None:
        raise PlanError(f"{path}.{key}", "must be a number, not null")
    return value


def _optional_real(
    data: Mapping[Any, Any],
    key: str,
    path: str,
    *,
    low: float,
    high: float,
    above_low: bool = False,
    default: float | None = None,
) -> float | None:
    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PlanError(f"{path}.{key}", f"must be a number, not {value!r}")
    if value < low or value > high or (above_low and value == low):
        lower = f"greater than {low:g}" if above_low else f"at least {low:g}"
        raise PlanError(f"{path}.{key}", f"must be {lower} and at most {high:g}, not {value:g}")
    return float(value)


def clean_policy(strategy: object, plan_data: object) -> dict[str, Any]:
    """An environment's ``rollout_strategy`` and ``canary_plan`` checked together: the plan as
    stored, ``{}`` (none) or every setting spelled out. A canary strategy needs a plan; an
    all-at-once one may keep a plan ready for later. Raises PlanError."""
    if strategy not in STRATEGIES:
        raise PlanError("rollout_strategy", f"must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    if plan_data is None or plan_data == {}:
        if strategy == CANARY:
            raise PlanError(
                ROOT,
                "a canary rollout needs a plan with at least one step, "
                'e.g. {"steps": [{"weight": 10, "seconds": 300}]}',
            )
        return {}
    return parse(plan_data).to_dict()


# --- words --------------------------------------------------------------------------


def number(value: float) -> str:
    """1.0 -> "1.0", 0.25 -> "0.25", 300.0 -> "300": short, and never hiding a difference."""
    if value == int(value) and abs(value) >= 10:
        return str(int(value))
    for digits in (1, 2):
        if round(value, digits) == value:
            return f"{value:.{digits}f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.2g}"


def duration(seconds: int) -> str:
    """300 -> "5 min", 7200 -> "2 h", 90 -> "90 s" (exact: it reads back the same)."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def step_text(weight: int, seconds: int) -> str:
    return f"{weight} % for {duration(seconds)}"


_STEP_LINE = re.compile(
    r"^(?P<weight>\d+)\s*%?\s*(?:for\s+)?(?P<amount>\d+)\s*"
    r"(?P<unit>s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?)\Z",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


def parse_step_line(line: str) -> dict[str, int]:
    """ "10 % for 5 min" (as ``describe`` writes a step) -> {"weight": 10, "seconds": 300}.
    Raises ValueError saying how to write it; ``parse`` checks the values."""
    match = _STEP_LINE.match(line.strip())
    if match is None:
        raise ValueError("write each step as a traffic weight and how long it holds, e.g. 10 % for 5 min")
    seconds = int(match["amount"]) * _UNIT_SECONDS[match["unit"][0].lower()]
    return {"weight": int(match["weight"]), "seconds": seconds}


def step_lines(plan: CanaryPlan | None) -> str:
    return "\n".join(step_text(s.weight, s.seconds) for s in plan.steps) if plan else ""


# --- the snapshot a promotion request keeps -----------------------------------------


def all_at_once_snapshot() -> dict[str, Any]:
    """What a request made before canaries existed, or under an all-at-once policy, carries."""
    return {"strategy": ALL_AT_ONCE}


def snapshot(strategy: str, plan_data: object, *, reason: str = "") -> dict[str, Any]:
    """The plan a request carries: ``{"strategy": "all_at_once"}`` or ``{"strategy": "canary",
    "steps": [...], "analysis": {...}}``. ``reason`` says why a request goes all at once
    whatever the policy (a rollback). Raises PlanError for a canary policy without a plan."""
    if reason:
        return {"strategy": ALL_AT_ONCE, "reason": reason}
    if strategy == CANARY:
        return {"strategy": CANARY, **parse(plan_data).to_dict()}
    if strategy != ALL_AT_ONCE:
        raise PlanError("rollout_strategy", f"must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    return all_at_once_snapshot()


def from_snapshot(data: Mapping[str, Any]) -> CanaryPlan | None:
    """The canary plan a request's snapshot holds, or None when it goes all at once."""
    if data.get("strategy") != CANARY:
        return None
    return parse({k: v for k, v in data.items() if k in ("steps", "analysis")})


def describe_snapshot(data: Mapping[str, Any]) -> str:
    """ "10 % for 5 min, then 50 % for 10 min, then all; judged on …" or "all at once"."""
    plan = from_snapshot(data)
    if plan is None:
        reason = data.get("reason")
        return "all at once" + (f" ({reason})" if reason else "")
    return f"{plan.describe()}; judged on {plan.analysis.describe()}"
