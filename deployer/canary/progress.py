"""A canary rollout's progress as people read it, from what the pipeline stores
(``Rollout.canary`` and ``Rollout.steps``): the plan's steps with where the rollout is and
each step's verdict, the time left in the step, and the window and markers of the charts
that overlay canary and stable. The API (``serializers.canary_state``), the rollout page and
the deployment page all read it here, so they never disagree about the step or the time left.

No queries: a rollout as ``selectors.rollout_get`` loads it is enough.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from registry.promotions import canary_plan

if TYPE_CHECKING:
    from deployer.models import Rollout

# The charts show a little of the stable version alone before the canary came in, and at
# least this much in all, so the first minutes of a canary are not a chart of two points.
CHART_LEAD = timedelta(seconds=60)
CHART_MIN = timedelta(minutes=5)
CHART_TAIL = timedelta(seconds=60)  # after a finished canary: its last points and the end marker
CHART_POINTS = 300  # at most, about: the step grows with the window
# The steps after the plan's: the promotion ("then all") is these, taken together.
PROMOTION_STEPS = ("promote_apply", "promote_wait", "promote_verify", "canary_end", "alias")


def _at(value: str | None) -> datetime | None:
    return parse_datetime(value) if value else None


def canary_state(rollout: Rollout, *, now: datetime | None = None) -> dict[str, Any] | None:
    """The canary's stored state with steps counted from 1 and the seconds left in the step
    (None when no step holds now); None for a rollout that is not a canary."""
    if not rollout.is_canary:
        return None
    state = rollout.canary
    plan = canary_plan.parse(state["plan"])
    index = state.get("step")
    in_step = index is not None and rollout.is_active and not rollout.canary_promoting
    until = _at(state.get("hold_until"))
    now = now or timezone.now()
    seconds_left = max(0.0, (until - now).total_seconds()) if in_step and until else None
    return {
        "plan": plan.to_dict(),
        "description": plan.describe(),
        "step": None if index is None else index + 1,
        "steps_total": len(plan.steps),
        "weight": state.get("weight") or 0,
        "step_started_at": state.get("step_started_at"),
        "hold_until": state.get("hold_until"),
        "seconds_left": seconds_left,
        "waiting": state.get("waiting") if in_step else None,
        "verdicts": [{**v, "step": v["step"] + 1} for v in state.get("verdicts", [])],
        "decision": state.get("decision"),
    }


def _left(seconds: float) -> str:
    """Whole seconds, as a person counts down: "42 s", "4 min 05 s", "1 h 02 min"."""
    whole = int(seconds + 0.999)  # rounded up: "0 s left" only once the time is up
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _promotion_state(steps: dict[str, dict]) -> str:
    """One state for the promotion's pipeline steps, as a StepState value."""
    states = [steps[name]["state"] for name in PROMOTION_STEPS if name in steps]
    for state in ("failed", "running"):
        if state in states:
            return state
    if states and all(s == "done" for s in states):
        return "done"
    if states and all(s == "skipped" for s in states):
        return "skipped"
    return "running" if "done" in states else "pending"


def page(rollout: Rollout, *, now: datetime | None = None) -> dict[str, Any] | None:
    """What the rollout page shows of a canary: ``state`` (``canary_state``), one row per plan
    step and a last one for the promotion (``rows``), the step holding now (``current``, a
    row or None) and the analysis rules in words. None for a rollout that is not a canary."""
    state = canary_state(rollout, now=now)
    if state is None:
        return None
    plan = canary_plan.parse(state["plan"])
    steps = {s["name"]: s for s in rollout.steps}
    verdicts = {v["step"]: v for v in state["verdicts"]}
    rows = []
    for index, step in enumerate(plan.steps):
        pipeline_step = steps.get(f"canary_step_{index}", {})
        row_state = pipeline_step.get("state", "pending")
        rows.append(
            {
                "number": index + 1,
                "weight": step.weight,
                "hold": canary_plan.duration(step.seconds),
                "state": row_state,
                # Holding now: the step's weight is in effect and its clock runs.
                "current": rollout.is_active and row_state == "running" and state["step"] == index + 1,
                "verdict": verdicts.get(index + 1),
                "started_at": pipeline_step.get("started_at"),
            }
        )
    rows.append(
        {"number": None, "weight": 100, "hold": "", "state": _promotion_state(steps), "current": False, "verdict": None}
    )
    left = state["seconds_left"]
    return {
        "state": state,
        "time_left": None if left is None else _left(left),
        "rows": rows,
        "current": next((r for r in rows if r["current"]), None),
        "promoting": rollout.is_active and rollout.canary_promoting,
        "rules": plan.analysis.describe(),
    }


def chart_window(rollout: Rollout, *, now: datetime) -> tuple[datetime, datetime, int]:
    """The span the charts cover and their step in seconds: from a minute before the canary
    came in (its ``canary_apply`` step) to now, or to a minute after the rollout ended; at
    least CHART_MIN, at most about CHART_POINTS points."""
    steps = {s["name"]: s for s in rollout.steps}
    began = _at(steps.get("canary_apply", {}).get("started_at")) or rollout.started_at or rollout.created_at
    end = min(now, rollout.finished_at + CHART_TAIL) if rollout.finished_at else now
    start = min(began - CHART_LEAD, end - CHART_MIN)
    seconds = (end - start).total_seconds()
    return start, end, max(10, int(seconds // CHART_POINTS))


def markers(rollout: Rollout) -> list[dict[str, Any]]:
    """Where the charts draw a dashed line: each step's start at its weight, and the end
    (promoted, or traffic back to stable). ``t`` in epoch seconds; ``bad`` marks a failure."""
    found = []
    state = rollout.canary
    started = {v["step"]: v["window_start"] for v in state.get("verdicts", [])}
    if state.get("step") is not None and state.get("step_started_at"):
        started.setdefault(state["step"], state["step_started_at"])
    plan = canary_plan.parse(state["plan"])
    for index, at in sorted(started.items()):
        when = _at(at)
        if when is not None:
            found.append({"t": int(when.timestamp()), "label": f"{plan.steps[index].weight} %", "bad": False})
    steps = {s["name"]: s for s in rollout.steps}
    decided = (state.get("decision") or {}).get("action")
    ends = [
        ("restore_canary_end", "aborted" if decided == "abort" else "back to stable", True),
        ("promote_apply", "promoted early" if decided == "promote" else "promoted", False),
    ]
    for name, label, bad in ends:
        when = _at(steps.get(name, {}).get("started_at"))
        if when is not None:
            found.append({"t": int(when.timestamp()), "label": label, "bad": bad})
    return found
