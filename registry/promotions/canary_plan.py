"""A canary plan: the steps (weight, seconds) and the analysis settings, as pure data.

Stand-in written by H4 (the controller) with the names and signatures of CANARY.md, so the
controller can be built and tested before H1's full version lands; the lead keeps H1's.
"""

from dataclasses import asdict, dataclass
from typing import Any

INCONCLUSIVE = ("wait", "pass", "fail")


class PlanError(ValueError):
    """A plan that cannot run; the message names the field (``canary_plan.steps[1].weight: …``)."""


@dataclass(frozen=True)
class CanaryStep:
    weight: int
    seconds: int


@dataclass(frozen=True)
class Analysis:
    min_requests: int = 100
    max_error_rate_increase_pp: float = 1.0
    max_p95_ratio: float = 1.5
    max_error_rate_pct: float | None = None
    max_p95_ms: float | None = None
    inconclusive: str = "wait"


@dataclass(frozen=True)
class CanaryPlan:
    steps: tuple[CanaryStep, ...]
    analysis: Analysis

    def to_dict(self) -> dict[str, Any]:
        return {"steps": [asdict(s) for s in self.steps], "analysis": asdict(self.analysis)}

    def describe(self) -> str:
        parts = [f"{s.weight} % for {duration(s.seconds)}" for s in self.steps]
        return ", then ".join([*parts, "all"])


def duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def parse(data: Any) -> CanaryPlan:
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list) or not data["steps"]:
        raise PlanError("canary_plan.steps: at least one step.")
    steps, last = [], 0
    for i, raw in enumerate(data["steps"]):
        where = f"canary_plan.steps[{i}]"
        if not isinstance(raw, dict):
            raise PlanError(f"{where}: an object with weight and seconds.")
        weight, seconds = raw.get("weight"), raw.get("seconds")
        if not isinstance(weight, int) or isinstance(weight, bool) or not 1 <= weight <= 99 or weight <= last:
            raise PlanError(f"{where}.weight: a whole number from 1 to 99, above the step before.")
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 5:
            raise PlanError(f"{where}.seconds: a whole number of seconds, at least 5.")
        steps.append(CanaryStep(weight=weight, seconds=seconds))
        last = weight
    raw_analysis = data.get("analysis") or {}
    if not isinstance(raw_analysis, dict):
        raise PlanError("canary_plan.analysis: an object.")
    known = set(Analysis.__dataclass_fields__)
    unknown = sorted(set(raw_analysis) - known)
    if unknown:
        raise PlanError(f"canary_plan.analysis.{unknown[0]}: not a setting.")
    analysis = Analysis(**raw_analysis)
    if analysis.inconclusive not in INCONCLUSIVE:
        raise PlanError("canary_plan.analysis.inconclusive: wait, pass or fail.")
    return CanaryPlan(steps=tuple(steps), analysis=analysis)
