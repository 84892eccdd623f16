"""Gates are pure functions: a table of inputs and the verdicts a reviewer reads."""

import pytest

from registry.promotions import gates

SIG = {"inputs": [{"name": "features", "dtype": "float32", "shape": [-1, 4]}], "outputs": []}


def cand(**kw):
    base = {
        "version": 2,
        "signature": SIG,
        "servable": True,
        "serving_note": "",
        "run_id": "r" * 32,
        "metrics": {"accuracy": 0.95},
    }
    return gates.Candidate(**{**base, **kw})


@pytest.mark.parametrize(
    "rule, candidate, passed, words",
    [
        ({"metric": "accuracy", "op": ">=", "value": 0.92}, cand(), True, "accuracy = 0.95"),
        ({"metric": "accuracy", "op": ">=", "value": 0.96}, cand(), False, "requires >= 0.96"),
        ({"metric": "latency_ms", "op": "<", "value": 10}, cand(), False, "did not log 'latency_ms'"),
        ({"metric": "accuracy", "op": ">=", "value": 0.9}, cand(metrics=None), False, "could not be read"),
        ({"metric": "accuracy", "op": ">=", "value": 0.9}, cand(run_id=""), False, "no training run"),
        ({"metric": "loss", "op": "<=", "value": 0.1}, cand(metrics={"loss": 0.1}), True, "loss = 0.1"),
    ],
)
def test_metric_thresholds(rule, candidate, passed, words):
    result = gates.metric_gate(rule, candidate)
    assert result.passed is passed and words in result.reason


@pytest.mark.parametrize(
    "live, new, changes",
    [
        (SIG, SIG, []),
        (None, SIG, []),
        (SIG, None, ["the candidate has no signature"]),
        (SIG, {"inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}]}, ["input 'features' was removed"]),
        (
            SIG,
            {"inputs": [{"name": "features", "dtype": "int64", "shape": [-1, 4]}]},
            ["input 'features' changed dtype float32 → int64"],
        ),
        (
            SIG,
            {"inputs": [{"name": "features", "dtype": "float32", "shape": [-1, 5]}]},
            ["input 'features' changed shape [-1, 4] → [-1, 5]"],
        ),
        # A new input is not a break for existing clients... only if it is optional, which a
        # signature cannot say; Modelgate reports removals and changes, the reviewer judges additions.
        (SIG, {"inputs": SIG["inputs"] + [{"name": "extra", "dtype": "float32", "shape": [-1]}]}, []),
    ],
)
def test_signature_changes(live, new, changes):
    assert gates.signature_changes(live, new) == changes


def test_compatibility_gate_accepts_a_declared_breaking_change():
    new = cand(signature={"inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}]})
    assert not gates.compatibility_gate(new, 1, SIG, breaking_change=False).passed
    declared = gates.compatibility_gate(new, 1, SIG, breaking_change=True)
    assert declared.passed and "Declared as a breaking change" in declared.reason
    assert gates.compatibility_gate(new, None, None, breaking_change=False).passed


@pytest.mark.parametrize(
    "rules, error",
    [
        ("accuracy", "must be a list"),
        ([{"metric": "accuracy", "op": "=>", "value": 1}], "op must be one of"),
        ([{"metric": "accuracy", "op": ">=", "value": "high"}], "value must be a number"),
        ([{"metric": "accuracy", "op": ">="}], "exactly metric, op and value"),
    ],
)
def test_bad_thresholds_are_refused(rules, error):
    with pytest.raises(ValueError, match=error):
        gates.validate_thresholds(rules)
