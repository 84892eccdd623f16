"""Promotion gates: pure functions of what is known about the candidate, the version live
in the target environment, and the policy. Each gives pass or fail with a reason a person
understands. Evaluated when a request is made, and again just before deployment."""

import math
import operator
from dataclasses import asdict, dataclass

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}


@dataclass(frozen=True)
class GateResult:
    gate: str
    passed: bool
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Candidate:
    version: int
    signature: dict | None
    servable: bool
    serving_note: str
    run_id: str
    metrics: dict | None  # None: the run could not be read


def metric_gate(rule: dict, candidate: Candidate) -> GateResult:
    name, op, threshold = rule["metric"], rule["op"], float(rule["value"])
    gate = f"metric {name} {op} {threshold:g}"
    if not candidate.run_id:
        return GateResult(gate, False, f"The version has no training run, so {name!r} cannot be checked.")
    if candidate.metrics is None:
        return GateResult(gate, False, "The training run could not be read from MLflow; retry the request.")
    if name not in candidate.metrics:
        return GateResult(gate, False, f"The training run did not log {name!r}.")
    value = candidate.metrics[name]
    if OPS[op](value, threshold):
        return GateResult(gate, True, f"{name} = {value:g}, required {op} {threshold:g}.")
    return GateResult(gate, False, f"{name} = {value:g}, but the policy requires {op} {threshold:g}.")


def signature_gate(candidate: Candidate) -> GateResult:
    if candidate.signature and candidate.signature.get("inputs"):
        return GateResult("serving signature", True, "The version has a serving signature.")
    return GateResult(
        "serving signature", False, "No serving signature: log the model with a signature so clients know its inputs."
    )


def servable_gate(candidate: Candidate) -> GateResult:
    if candidate.servable:
        return GateResult("TF Serving can serve it", True, "A SavedModel is present.")
    return GateResult("TF Serving can serve it", False, candidate.serving_note or "No SavedModel was found.")


def _by_name(specs) -> dict:
    return {s["name"]: s for s in (specs or [])}


def signature_changes(live: dict | None, candidate: dict | None) -> list[str]:
    """What would break a client of the live version: removed inputs, dtype or shape changes."""
    if not live or not live.get("inputs"):
        return []
    if not candidate or not candidate.get("inputs"):
        return ["the candidate has no signature"]
    old, new = _by_name(live["inputs"]), _by_name(candidate["inputs"])
    changes = []
    for name, spec in old.items():
        if name not in new:
            changes.append(f"input {name!r} was removed")
            continue
        if spec.get("dtype") != new[name].get("dtype"):
            changes.append(f"input {name!r} changed dtype {spec.get('dtype')} → {new[name].get('dtype')}")
        if spec.get("shape") != new[name].get("shape"):
            changes.append(f"input {name!r} changed shape {spec.get('shape')} → {new[name].get('shape')}")
    return changes


def compatibility_gate(
    candidate: Candidate, live_version: int | None, live_signature: dict | None, breaking_change: bool
) -> GateResult:
    gate = "compatible with the live version"
    if live_version is None:
        return GateResult(gate, True, "Nothing is live in this environment yet.")
    changes = signature_changes(live_signature, candidate.signature)
    if not changes:
        return GateResult(gate, True, f"Inputs match v{live_version}, which is live now.")
    listed = "; ".join(changes)
    if breaking_change:
        return GateResult(gate, True, f"Declared as a breaking change: {listed}.")
    return GateResult(
        gate,
        False,
        f"Breaks clients of v{live_version}: {listed}. Mark the request as a breaking change if this is intended.",
    )


def previous_environment_gate(previous_env: str | None, was_live_there: bool) -> GateResult:
    gate = "live in the previous environment"
    if previous_env is None:
        return GateResult(gate, True, "This is the first environment on the path.")
    if was_live_there:
        return GateResult(gate, True, f"The version has been live in {previous_env}.")
    return GateResult(gate, False, f"The version has never been live in {previous_env}; promote it there first.")


def evaluate(
    *,
    policy,
    candidate: Candidate,
    live_version: int | None,
    live_signature: dict | None,
    previous_env: str | None,
    was_live_in_previous: bool,
    breaking_change: bool,
) -> list[GateResult]:
    """Every gate the environment's policy turns on, in a fixed order."""
    results = [metric_gate(rule, candidate) for rule in policy.metric_thresholds]
    if policy.require_signature:
        results.append(signature_gate(candidate))
    if policy.require_servable:
        results.append(servable_gate(candidate))
    if policy.require_compatible_signature:
        results.append(compatibility_gate(candidate, live_version, live_signature, breaking_change))
    if policy.require_previous:
        results.append(previous_environment_gate(previous_env, was_live_in_previous))
    return results


def validate_thresholds(rules) -> list[dict]:
    """Check an admin's metric thresholds; raise ValueError naming the bad rule."""
    if not isinstance(rules, list):
        raise ValueError('Metric thresholds must be a list such as [{"metric": "accuracy", "op": ">=", "value": 0.9}].')
    cleaned = []
    for i, rule in enumerate(rules, start=1):
        if not isinstance(rule, dict) or set(rule) != {"metric", "op", "value"}:
            raise ValueError(f"Threshold {i} must have exactly metric, op and value.")
        if rule["op"] not in OPS:
            raise ValueError(f"Threshold {i}: op must be one of {', '.join(OPS)}.")
        if not isinstance(rule["metric"], str) or not rule["metric"]:
            raise ValueError(f"Threshold {i}: metric must be a name.")
        if len(rule["metric"]) > 250:
            raise ValueError(f"Threshold {i}: metric names are at most 250 characters.")
        try:
            value = float(rule["value"])
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"Threshold {i}: value must be a number.") from None
        if not math.isfinite(value):  # nan, inf and 1e999 (which float() makes inf)
            raise ValueError(f"Threshold {i}: value must be a finite number, not {rule['value']!r}.")
        cleaned.append({"metric": rule["metric"], "op": rule["op"], "value": value})
    return cleaned
