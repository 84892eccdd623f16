"""Judging a canary step against the stable version on the same window (issue 17): pass, fail
with both sides' numbers quoted, or inconclusive with too few requests."""

import json

import pytest

from deployer.canary.analysis import TrackWindow, Verdict, judge, next_action
from registry.promotions.canary_plan import Analysis

RULES = Analysis(min_requests=50, max_error_rate_increase_pp=1.0, max_p95_ratio=1.5)
STABLE = TrackWindow(requests=480, errors=0, p95_ms=100.0)


def test_a_canary_as_good_as_stable_passes_and_says_why():
    verdict = judge(RULES, STABLE, TrackWindow(requests=60, errors=0, p95_ms=110.0))
    assert verdict.result == "pass"
    assert verdict.reason == (
        "canary error rate 0.0 % (0/60) ≤ stable 0.0 % (0/480) + 1.0 pp; "
        "canary p95 110 ms ≤ 1.5 × stable 100 ms (150 ms)"
    )


def test_a_canary_that_answers_errors_fails_quoting_both_error_rates():
    verdict = judge(RULES, STABLE, TrackWindow(requests=50, errors=21, p95_ms=90.0))
    assert verdict.result == "fail"
    assert verdict.reason == "canary error rate 42.0 % (21/50) > stable 0.0 % (0/480) + 1.0 pp"
    assert verdict.numbers["canary"] == {"requests": 50, "errors": 21, "error_rate_pct": 42.0, "p95_ms": 90.0}
    assert verdict.numbers["stable"]["requests"] == 480 and verdict.numbers["limits"]["error_rate_pct"] == 1.0
    json.dumps(verdict.numbers)  # stored on the rollout as JSON


def test_the_error_rate_is_compared_in_percentage_points_over_stables():
    stable = TrackWindow(requests=1000, errors=20, p95_ms=None)  # 2.0 %
    at_the_limit = judge(RULES, stable, TrackWindow(requests=100, errors=3, p95_ms=None))  # 3.0 % = 2.0 + 1.0
    assert at_the_limit.result == "pass"
    over = judge(RULES, stable, TrackWindow(requests=1000, errors=31, p95_ms=None))  # 3.1 %
    assert over.result == "fail"
    assert over.reason == "canary error rate 3.1 % (31/1000) > stable 2.0 % (20/1000) + 1.0 pp"


def test_a_slow_canary_fails_on_the_p95_ratio():
    verdict = judge(RULES, STABLE, TrackWindow(requests=200, errors=0, p95_ms=151.0))
    assert verdict.result == "fail"
    assert verdict.reason == "canary p95 151 ms > 1.5 × stable 100 ms (150 ms)"
    assert verdict.numbers["limits"]["p95_ms"] == 150.0


def test_every_failing_rule_is_named():
    verdict = judge(RULES, STABLE, TrackWindow(requests=100, errors=10, p95_ms=400.0))
    assert verdict.result == "fail"
    assert "canary error rate 10.0 % (10/100) > stable" in verdict.reason
    assert "canary p95 400 ms > 1.5 × stable 100 ms" in verdict.reason


@pytest.mark.parametrize(
    ("canary", "reason"),
    [
        (TrackWindow(requests=200, errors=11, p95_ms=50.0), "canary error rate 5.5 % (11/200) > ceiling 5.0 %"),
        (TrackWindow(requests=200, errors=0, p95_ms=80.5), "canary p95 80.5 ms > ceiling 80 ms"),
    ],
)
def test_the_absolute_ceilings_apply_whatever_stable_does(canary, reason):
    bad_stable = TrackWindow(requests=500, errors=50, p95_ms=900.0)  # 10 %, slow: the relative rules allow a lot
    rules = Analysis(min_requests=50, max_error_rate_pct=5, max_p95_ms=80)
    verdict = judge(rules, bad_stable, canary)
    assert verdict.result == "fail" and verdict.reason == reason


def test_too_few_canary_requests_is_inconclusive_whatever_the_errors():
    verdict = judge(RULES, STABLE, TrackWindow(requests=49, errors=49, p95_ms=5000.0))
    assert verdict.result == "inconclusive"
    assert verdict.reason == "canary served 49 requests, fewer than the 50 a step needs (stable served 480)"


@pytest.mark.parametrize(("policy", "action"), [("wait", "wait"), ("pass", "advance"), ("fail", "abort")])
def test_the_plan_says_what_an_inconclusive_step_does(policy, action):
    rules = Analysis(min_requests=50, inconclusive=policy)
    verdict = judge(rules, STABLE, TrackWindow(requests=3, errors=0, p95_ms=None))
    assert next_action(rules, verdict) == action
    assert next_action(rules, Verdict("pass", "")) == "advance"
    assert next_action(rules, Verdict("fail", "")) == "abort"


def test_with_no_stable_traffic_errors_are_judged_against_zero_and_latency_by_the_ceiling_only():
    idle = TrackWindow(requests=0, errors=0, p95_ms=None)
    clean = judge(RULES, idle, TrackWindow(requests=100, errors=1, p95_ms=2000.0))
    assert clean.result == "pass"
    assert clean.reason == (
        "canary error rate 1.0 % (1/100) ≤ stable 0.0 % (0/0) (no stable traffic) + 1.0 pp; "
        "no stable p95 to compare latency with"
    )
    failing = judge(RULES, idle, TrackWindow(requests=100, errors=2, p95_ms=20.0))
    assert failing.result == "fail" and "(no stable traffic)" in failing.reason
    ceiling = Analysis(min_requests=50, max_p95_ms=1000)
    assert judge(ceiling, idle, TrackWindow(requests=100, errors=0, p95_ms=2000.0)).reason == (
        "canary p95 2000 ms > ceiling 1000 ms"
    )
