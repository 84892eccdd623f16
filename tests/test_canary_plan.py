"""The canary plan an environment's policy holds and a promotion request snapshots (issue 17):
what it accepts, how a refusal names the field at fault, and how it reads in words."""

import json

import pytest

from registry.promotions import canary_plan
from registry.promotions.canary_plan import Analysis, CanaryPlan, CanaryStep, PlanError

PLAN = {
    "steps": [{"weight": 10, "seconds": 300}, {"weight": 50, "seconds": 600}],
    "analysis": {
        "min_requests": 100,
        "max_error_rate_increase_pp": 1.0,
        "max_p95_ratio": 1.5,
        "max_error_rate_pct": None,
        "max_p95_ms": None,
        "inconclusive": "wait",
    },
}


def _with_steps(*steps, **analysis) -> dict:
    return {"steps": [{"weight": w, "seconds": s} for w, s in steps], "analysis": analysis}


def test_the_contracts_example_reads_as_steps_and_rules():
    plan = canary_plan.parse(PLAN)
    assert plan == CanaryPlan(steps=(CanaryStep(10, 300), CanaryStep(50, 600)), analysis=Analysis())
    assert plan.describe() == "10 % for 5 min, then 50 % for 10 min, then all"
    assert plan.total_seconds == 900


def test_a_plan_survives_json_and_parse_unchanged():
    plan = canary_plan.parse(_with_steps((5, 30), (25, 90), (75, 7200), max_p95_ms=250, inconclusive="fail"))
    stored = json.loads(json.dumps(plan.to_dict()))
    assert canary_plan.parse(stored) == plan
    assert stored["analysis"] == {
        "min_requests": 100,
        "max_error_rate_increase_pp": 1.0,
        "max_p95_ratio": 1.5,
        "max_error_rate_pct": None,
        "max_p95_ms": 250.0,
        "inconclusive": "fail",
    }


def test_missing_analysis_settings_take_the_defaults():
    assert canary_plan.parse({"steps": [{"weight": 10, "seconds": 60}]}).analysis == Analysis()
    assert canary_plan.parse({"steps": [{"weight": 10, "seconds": 60}], "analysis": None}).analysis == Analysis()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, 'canary_plan: must be an object with "steps" and "analysis"'),
        ([{"weight": 10, "seconds": 60}], 'canary_plan: must be an object with "steps" and "analysis"'),
        ({"steps": []}, "canary_plan.steps: must be a list of at least one step"),
        ({"steps": "10 % for 5 min"}, "canary_plan.steps: must be a list of at least one step"),
        ({"steps": [{"weight": 10, "seconds": 60}], "stages": []}, "canary_plan.stages: unknown setting"),
        ({"steps": [10]}, 'canary_plan.steps[0]: must be an object with "weight" and "seconds"'),
        ({"steps": [{"seconds": 60}]}, "canary_plan.steps[0].weight: is required"),
        ({"steps": [{"weight": 10}]}, "canary_plan.steps[0].seconds: is required"),
        ({"steps": [{"weight": 10, "seconds": 60, "pause": True}]}, "canary_plan.steps[0].pause: unknown setting"),
        (_with_steps((10, 300), (10, 600)), "canary_plan.steps[1].weight: must be greater than the step before (10)"),
        (_with_steps((10, 300), (50, 600), (40, 60)), "canary_plan.steps[2].weight: must be greater than the step"),
        (_with_steps((0, 300)), "canary_plan.steps[0].weight: must be from 1 to 99"),
        (_with_steps((100, 300)), "canary_plan.steps[0].weight: must be from 1 to 99"),
        (_with_steps((12.5, 300)), "canary_plan.steps[0].weight: must be a whole number, not 12.5"),
        (_with_steps((True, 300)), "canary_plan.steps[0].weight: must be a whole number, not True"),
        (_with_steps(("10", 300)), "canary_plan.steps[0].weight: must be a whole number, not '10'"),
        (_with_steps((10, 4)), "canary_plan.steps[0].seconds: must be from 5 to 604800 (seconds), not 4"),
        (_with_steps(*[(w, 60) for w in range(1, 13)]), "canary_plan.steps: at most 10 steps (there are 12)"),
        (_with_steps((10, 60), min_requests=0), "canary_plan.analysis.min_requests: must be from 1"),
        (_with_steps((10, 60), max_error_rate_increase_pp=-1), "canary_plan.analysis.max_error_rate_increase_pp"),
        (
            _with_steps((10, 60), max_error_rate_increase_pp=None),
            "canary_plan.analysis.max_error_rate_increase_pp: must be a number, not null",
        ),
        (_with_steps((10, 60), max_p95_ratio=0.5), "canary_plan.analysis.max_p95_ratio: must be at least 1"),
        (_with_steps((10, 60), max_p95_ratio=float("nan")), "canary_plan.analysis.max_p95_ratio: must be a number"),
        (_with_steps((10, 60), max_error_rate_pct=101), "canary_plan.analysis.max_error_rate_pct: must be at least"),
        (_with_steps((10, 60), max_p95_ms=0), "canary_plan.analysis.max_p95_ms: must be greater than 0"),
        (_with_steps((10, 60), inconclusive="retry"), "canary_plan.analysis.inconclusive: must be one of wait, pass"),
        (_with_steps((10, 60), window=60), "canary_plan.analysis.window: unknown setting (known: min_requests"),
        ({"steps": [{"weight": 10, "seconds": 60}], "analysis": []}, "canary_plan.analysis: must be an object"),
    ],
)
def test_a_plan_that_cannot_be_followed_is_refused_naming_the_field(data, message):
    with pytest.raises(PlanError) as refused:
        canary_plan.parse(data)
    assert str(refused.value).startswith(message)
    assert str(refused.value).startswith(refused.value.path + ": ")


def test_the_rules_read_in_words():
    assert Analysis().describe() == (
        "at least 100 canary requests per step: error rate at most stable's + 1.0 pp, p95 at most 1.5 × stable's; "
        "with fewer, the step waits for more"
    )
    strict = Analysis(
        min_requests=1, max_error_rate_increase_pp=0.25, max_error_rate_pct=5, max_p95_ms=300, inconclusive="fail"
    )
    assert strict.describe() == (
        "at least 1 canary request per step: error rate at most stable's + 0.25 pp, p95 at most 1.5 × stable's, "
        "error rate at most 5.0 %, p95 at most 300 ms; with fewer, the step fails"
    )


@pytest.mark.parametrize(
    ("seconds", "words"), [(5, "5 s"), (90, "90 s"), (60, "1 min"), (600, "10 min"), (3600, "1 h"), (5400, "90 min")]
)
def test_durations_read_exactly_and_read_back(seconds, words):
    assert canary_plan.duration(seconds) == words
    assert canary_plan.parse_step_line(f"10 % for {words}") == {"weight": 10, "seconds": seconds}


def test_step_lines_are_what_the_settings_page_shows_and_reads_back():
    plan = canary_plan.parse(_with_steps((10, 300), (50, 90)))
    text = canary_plan.step_lines(plan)
    assert text == "10 % for 5 min\n50 % for 90 s"
    assert [canary_plan.parse_step_line(line) for line in text.splitlines()] == plan.to_dict()["steps"]
    assert canary_plan.parse_step_line("25% 2h") == {"weight": 25, "seconds": 7200}
    assert canary_plan.parse_step_line("25 %  for 30 seconds") == {"weight": 25, "seconds": 30}
    for bad in ("ten % for 5 min", "10 % for 5 days", "10 % for", "12.5 % for 5 min"):
        with pytest.raises(ValueError, match="e.g. 10 % for 5 min"):
            canary_plan.parse_step_line(bad)


def test_a_canary_policy_needs_a_plan_and_an_all_at_once_one_may_keep_one_ready():
    assert canary_plan.clean_policy("all_at_once", {}) == {}
    assert canary_plan.clean_policy("all_at_once", None) == {}
    assert canary_plan.clean_policy("all_at_once", PLAN) == PLAN
    assert (
        canary_plan.clean_policy("canary", {"steps": [{"weight": 10, "seconds": 300}]})["analysis"] == PLAN["analysis"]
    )
    with pytest.raises(PlanError, match="^canary_plan: a canary rollout needs a plan with at least one step"):
        canary_plan.clean_policy("canary", {})
    with pytest.raises(PlanError, match="^rollout_strategy: must be one of all_at_once, canary, not 'linear'"):
        canary_plan.clean_policy("linear", PLAN)


def test_the_request_snapshot_holds_the_whole_plan_or_says_all_at_once_and_why():
    snapshot = canary_plan.snapshot("canary", {"steps": [{"weight": 10, "seconds": 300}]})
    assert snapshot == {"strategy": "canary", "steps": [{"weight": 10, "seconds": 300}], "analysis": PLAN["analysis"]}
    assert canary_plan.from_snapshot(snapshot) == CanaryPlan(steps=(CanaryStep(10, 300),))
    assert canary_plan.describe_snapshot(snapshot) == (
        "10 % for 5 min, then all; judged on at least 100 canary requests per step: "
        "error rate at most stable's + 1.0 pp, p95 at most 1.5 × stable's; with fewer, the step waits for more"
    )
    assert canary_plan.snapshot("all_at_once", PLAN) == {"strategy": "all_at_once"}
    assert canary_plan.describe_snapshot({"strategy": "all_at_once"}) == "all at once"
    rollback = canary_plan.snapshot("canary", PLAN, reason="a rollback returns at once")
    assert rollback == {"strategy": "all_at_once", "reason": "a rollback returns at once"}
    assert canary_plan.from_snapshot(rollback) is None
    assert canary_plan.describe_snapshot(rollback) == "all at once (a rollback returns at once)"
