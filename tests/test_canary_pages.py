"""The rollout page of a canary (issue 17, item 6): the plan with the current step, its weight
and the time left, each step's verdict with both tracks' numbers, the operator's decision,
live charts' data, and Promote now / Abort for those who may. The deployment page says where
a running canary is. Rollouts are written as the pipeline leaves them (tests/test_canary_api.py's
``held_canary``); tests/test_browser_journeys.py watches a real one in a browser."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from console.accounts.roles import APPROVER
from console.audit.models import AuditEvent
from deployer.metrics.arithmetic import Interval
from deployer.metrics.points import FINE, align, traffic_fields
from deployer.models import MetricPoint, Rollout
from registry.promotions.models import Environment
from tests.test_canary_api import VERDICT, held_canary
from tests.test_deployer_pages import served  # noqa: F401 - a fixture

pytestmark = pytest.mark.django_db

PROMOTE, ABORT = "Promote now", "Abort"


def _html(response) -> str:
    return response.content.decode()


def _button(html: str, label: str) -> bool:
    return re.search(rf"<button[^>]*>{re.escape(label)}</button>", html) is not None


def _row(html: str, step: str) -> str:
    """One row of the plan table (``step`` "1", "2" or "all"), tags and all."""
    found = re.search(rf'<tr class="canary-step[^"]*" data-step="{step}">(.*?)</tr>', html, re.S)
    assert found, f"no row for step {step}"
    return found.group(1)


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.fixture
def at_step_2(served, engineer, approver):
    """iris v1 as a canary beside v2 (which serves), step 1 passed, a minute into step 2 (600 s)."""
    return held_canary(served, engineer, approver, step=1, verdicts=[VERDICT])


# --- what each person sees ----------------------------------------------------------------


def test_a_viewer_sees_the_plan_the_step_its_weight_the_time_left_and_each_verdict(browser_client, viewer, at_step_2):
    html = _html(browser_client(viewer).get(f"/rollouts/{at_step_2.pk}/"))
    text = _text(html)

    assert "10 % for 5 min, then 50 % for 10 min, then all" in text
    now = _text(re.search(r'<p id="canary-now">(.*?)</p>', html, re.S).group(1)).strip()
    assert re.fullmatch(
        r"Step 2 of 2 : 50 % of the traffic to the canary \(v1\), the rest to the stable version; "
        r"(8 min 5\d s|9 min 00 s) left in this step\.",
        now,
    ), now
    first, second, promotion = _row(html, "1"), _row(html, "2"), _row(html, "all")
    assert "10 %" in first and "5 min" in first and "badge-ok" in first and ">passed<" in first
    assert VERDICT["reason"] in _text(first)
    assert "0 % errors (0/120)" in _text(first) and "p95 11 ms" in _text(first)  # the canary
    assert "0 % errors (0/480)" in _text(first) and "p95 10 ms" in _text(first)  # stable
    assert "50 %" in second and ">running<" in second and re.search(r"\d+ min \d\d s left", second)
    assert ">passed<" not in second and "current" in re.search(r'<tr class="([^"]*)" data-step="2"', html).group(1)
    assert "100 %" in promotion and ">pending<" in promotion
    assert "at least 100 canary requests per step" in text
    assert not _button(html, PROMOTE) and not _button(html, ABORT)


def test_the_requester_may_abort_with_a_reason_but_not_promote_their_own_canary(browser_client, engineer, at_step_2):
    html = _html(browser_client(engineer).get(f"/rollouts/{at_step_2.pk}/"))
    assert _button(html, ABORT) and not _button(html, PROMOTE)
    form = re.search(r'<form method="post" action="/rollouts/\d+/abort/".*?</form>', html, re.S).group(0)
    assert 'name="csrfmiddlewaretoken"' in form and '<textarea name="reason"' in form


def test_an_approver_may_promote_now_and_abort(browser_client, approver, at_step_2):
    html = _html(browser_client(approver).get(f"/rollouts/{at_step_2.pk}/"))
    assert _button(html, PROMOTE) and _button(html, ABORT)
    form = re.search(r'<form method="post" action="/rollouts/\d+/promote/".*?</form>', html, re.S).group(0)
    assert 'name="csrfmiddlewaretoken"' in form and "data-confirm=" in form


def test_a_requester_who_is_an_approver_may_promote_only_where_self_approval_is_allowed(
    browser_client, engineer, at_step_2
):
    engineer.groups.add(Group.objects.get(name=APPROVER))
    client = browser_client(engineer)
    assert not _button(_html(client.get(f"/rollouts/{at_step_2.pk}/")), PROMOTE)
    response = client.post(f"/rollouts/{at_step_2.pk}/promote/")  # the server refuses what is not shown
    assert response.status_code == 403
    assert "You requested this promotion; another approver must promote its canary early." in _html(response)

    Environment.objects.filter(name="staging").update(allow_self_approval=True)
    assert _button(_html(client.get(f"/rollouts/{at_step_2.pk}/")), PROMOTE)
    assert client.post(f"/rollouts/{at_step_2.pk}/promote/").status_code == 302


def test_no_buttons_once_the_canary_is_decided_or_over(browser_client, approver, engineer, at_step_2):
    client = browser_client(approver)
    client.post(f"/rollouts/{at_step_2.pk}/abort/", {"reason": "p95 creeping up"})
    html = _html(client.get(f"/rollouts/{at_step_2.pk}/"))
    assert "Aborted by ada-approver" in _text(html) and "p95 creeping up" in html
    assert not _button(html, PROMOTE) and not _button(html, ABORT)

    Rollout.objects.filter(pk=at_step_2.pk).update(state=Rollout.ROLLED_BACK, finished_at=timezone.now())
    html = _html(browser_client(engineer).get(f"/rollouts/{at_step_2.pk}/"))
    assert not _button(html, ABORT)
    assert "Ended : all traffic is back on the stable version" in _text(html)


def test_a_step_waiting_for_traffic_says_so_with_the_numbers_so_far(browser_client, viewer, served, engineer, approver):
    rollout = held_canary(served, engineer, approver)
    numbers = {
        "stable": {"requests": 300, "errors": 0, "error_rate_pct": 0.0, "p95_ms": 9.0},
        "canary": {"requests": 12, "errors": 0, "error_rate_pct": 0.0, "p95_ms": None},
    }
    reason = "12 requests, fewer than the 100 the plan asks for"
    at = timezone.now().isoformat()
    Rollout.objects.filter(pk=rollout.pk).update(
        canary={**rollout.canary, "waiting": {"reason": reason, "numbers": numbers, "at": at}}
    )
    html = _html(browser_client(viewer).get(f"/rollouts/{rollout.pk}/"))
    assert f"the step's time is up and it waits for more traffic: {reason}" in _text(html)
    first = _row(html, "1")
    assert ">inconclusive<" in first and "badge-warning" in first and "0 % errors (0/12)" in _text(first)


# --- it updates live, and stops when final ------------------------------------------------


def test_a_running_canary_polls_its_panel_and_steps_together(browser_client, viewer, at_step_2):
    client = browser_client(viewer)
    html = _html(client.get(f"/rollouts/{at_step_2.pk}/"))
    poll = f'hx-get="/rollouts/{at_step_2.pk}/?part=canary" hx-trigger="every 1s"'
    assert poll in html
    assert html.count("hx-trigger=") == 1  # the steps inside do not poll on their own

    part = _html(client.get(f"/rollouts/{at_step_2.pk}/?part=canary", HTTP_HX_REQUEST="true"))
    assert part.strip().startswith('<div id="canary-live"') and poll in part
    assert 'id="canary"' in part and f'id="rollout-{at_step_2.pk}-steps"' in part
    assert "<html" not in part and "canary-charts" not in part  # the charts refresh themselves

    Rollout.objects.filter(pk=at_step_2.pk).update(state=Rollout.LIVE, finished_at=timezone.now())
    part = _html(client.get(f"/rollouts/{at_step_2.pk}/?part=canary", HTTP_HX_REQUEST="true"))
    assert "hx-trigger" not in part and "Done" in part  # the last answer shows the end


def test_the_deployment_and_request_pages_say_where_a_running_canary_is(browser_client, viewer, served, at_step_2):
    client = browser_client(viewer)
    html = _html(client.get(f"/deployments/{served.pk}/"))
    line = _text(re.search(r'<p class="small" data-role="canary-now">(.*?)</p>', html, re.S).group(1)).strip()
    assert line.startswith("Canary Step 2 of 2 : 50 % of the traffic to the canary (v1)")
    assert re.search(r"\d+ min \d\d s left in this step", line)
    assert f'<a href="/rollouts/{at_step_2.pk}/">Plan, verdicts and charts</a>' in html
    # The deployment page polls the steps alone; that answer carries the same line.
    steps = _html(client.get(f"/rollouts/{at_step_2.pk}/", HTTP_HX_REQUEST="true"))
    assert steps.strip().startswith("<section") and 'data-role="canary-now"' in steps
    assert 'id="canary"' not in steps

    html = _html(client.get(f"/promotions/{at_step_2.request_id}/"))
    assert "Step 2 of 2" in _text(html) and f'href="/rollouts/{at_step_2.pk}/"' in html


# --- the buttons' POSTs --------------------------------------------------------------------


def test_an_approver_promotes_now_and_lands_back_on_the_page_with_a_message(
    browser_client, approver, at_step_2, sent_tasks, django_capture_on_commit_callbacks
):
    client = browser_client(approver)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/rollouts/{at_step_2.pk}/promote/")
    assert response.status_code == 302 and response["Location"] == f"/rollouts/{at_step_2.pk}/"
    at_step_2.refresh_from_db()
    assert at_step_2.canary["decision"]["action"] == "promote"
    assert at_step_2.canary["decision"]["actor"] == "ada-approver"
    assert AuditEvent.objects.filter(verb="rollout.canary_promote_now", actor_name="ada-approver").count() == 1
    assert sent_tasks == [("deployer.run_rollout", [at_step_2.pk])]  # the worker acts on it now
    html = _html(client.get(response["Location"]))
    assert f"Revision {at_step_2.revision} promoted early" in html
    assert "Promoted early by ada-approver" in _text(html)


def test_the_requester_aborts_with_a_reason(browser_client, engineer, at_step_2):
    response = browser_client(engineer).post(f"/rollouts/{at_step_2.pk}/abort/", {"reason": "  error spike  "})
    assert response.status_code == 302
    at_step_2.refresh_from_db()
    assert at_step_2.canary["decision"] == {**at_step_2.canary["decision"], "action": "abort", "reason": "error spike"}
    event = AuditEvent.objects.get(verb="rollout.canary_abort")
    assert event.actor_name == "eli-engineer" and event.after == {"decision": "abort", "reason": "error spike"}


@pytest.mark.parametrize(
    "role, action, message",
    [
        ("engineer", "promote", "Only members of the approver group may promote a canary in staging early."),
        ("viewer", "promote", "Only members of the approver group may promote a canary in staging early."),
        ("viewer", "abort", "Only the requester or an approver of staging may abort this canary."),
    ],
)
def test_who_may_not_is_refused_with_403_and_the_reason_on_the_page(
    request, browser_client, at_step_2, role, action, message
):
    response = browser_client(request.getfixturevalue(role)).post(f"/rollouts/{at_step_2.pk}/{action}/", {})
    assert response.status_code == 403
    assert f'<div class="alert alert-error" role="alert"><span>{message}</span></div>' in _html(response)
    at_step_2.refresh_from_db()
    assert at_step_2.canary["decision"] is None
    assert not AuditEvent.objects.filter(verb__startswith="rollout.canary_").exists()


@pytest.mark.parametrize("action", ["promote", "abort"])
def test_someone_without_a_role_cannot_post_or_see_the_traffic(browser_client, nobody, at_step_2, action):
    client = browser_client(nobody)
    assert client.post(f"/rollouts/{at_step_2.pk}/{action}/").status_code == 403
    assert client.get(f"/rollouts/{at_step_2.pk}/traffic/").status_code == 403
    at_step_2.refresh_from_db()
    assert at_step_2.canary["decision"] is None


def test_the_buttons_need_the_csrf_token(at_step_2, approver):
    client = Client(enforce_csrf_checks=True)
    client.force_login(approver)
    assert client.post(f"/rollouts/{at_step_2.pk}/promote/").status_code == 403
    at_step_2.refresh_from_db()
    assert at_step_2.canary["decision"] is None


def test_a_decision_on_a_decided_canary_is_a_409_with_the_reason(browser_client, approver, engineer, at_step_2):
    assert browser_client(engineer).post(f"/rollouts/{at_step_2.pk}/abort/", {}).status_code == 302
    response = browser_client(approver).post(f"/rollouts/{at_step_2.pk}/promote/")
    assert response.status_code == 409
    assert f"Revision {at_step_2.revision} was already aborted by eli-engineer." in _html(response)


def test_promoting_a_rollout_that_is_no_canary_is_a_409_not_a_500(browser_client, approver, served):
    response = browser_client(approver).post(f"/rollouts/{served.live_rollout_id}/promote/")
    assert response.status_code == 409
    assert "Revision 3 is not a canary; it goes out all at once." in _html(response)


def test_an_abort_reason_too_long_is_shown_under_the_field(browser_client, engineer, at_step_2):
    response = browser_client(engineer).post(f"/rollouts/{at_step_2.pk}/abort/", {"reason": "x" * 10001})
    assert response.status_code == 400
    field = re.search(r'<div class="field has-error">.*?</div>\s*</div>', _html(response), re.S).group(0)
    assert "at most 10000 characters" in field and 'name="reason"' in field
    at_step_2.refresh_from_db()
    assert at_step_2.canary["decision"] is None


def test_the_buttons_answer_404_for_a_missing_rollout_and_405_for_a_get(browser_client, approver):
    client = browser_client(approver)
    assert client.post("/rollouts/99999/promote/").status_code == 404
    assert client.get("/rollouts/99999/abort/").status_code == 405


# --- the charts' data ---------------------------------------------------------------------


def _point(deployment, track: str, at, requests: int, errors: int, latency_us: str) -> MetricPoint:
    interval = Interval(requests=requests, errors=errors, buckets={latency_us: requests}, latency_sum_us=0.0)
    return MetricPoint.objects.create(
        deployment=deployment, resolution=FINE, at=at, track=track, version=1, **traffic_fields(interval)
    )


def test_the_traffic_overlays_canary_and_stable_over_the_canary_with_its_step_markers(
    browser_client, viewer, served, at_step_2
):
    began = timezone.now() - timedelta(minutes=2)
    steps = [{**s, "started_at": began.isoformat()} if s["name"] == "canary_apply" else s for s in at_step_2.steps]
    Rollout.objects.filter(pk=at_step_2.pk).update(steps=steps)
    at = align(timezone.now(), FINE) - timedelta(seconds=30)
    _point(served, "stable", at, requests=90, errors=0, latency_us="10000")
    _point(served, "canary", at, requests=10, errors=5, latency_us="50000")
    _point(served, "stable", at - timedelta(hours=1), requests=999, errors=0, latency_us="10000")  # long before

    data = browser_client(viewer).get(f"/rollouts/{at_step_2.pk}/traffic/").json()

    assert data["live"] is True and data["step"] == 10
    assert data["start"] <= int(began.timestamp()) - 60 and data["end"] >= int(at.timestamp())
    i = data["t"].index(int(at.timestamp()))
    assert data["tracks"]["canary"]["error_rate"][i] == 0.5 and data["tracks"]["stable"]["error_rate"][i] == 0
    assert data["tracks"]["canary"]["rps"][i] == 1.0 and data["tracks"]["stable"]["rps"][i] == 9.0
    assert data["tracks"]["canary"]["p95_ms"][i] > data["tracks"]["stable"]["p95_ms"][i]
    assert (data["totals"]["canary"]["requests"], data["totals"]["stable"]["requests"]) == (10, 90)
    # Step 1 began at the verdict's window start, step 2 a minute ago.
    assert [m["label"] for m in data["markers"]] == ["10 %", "50 %"]


def test_a_finished_canary_says_its_traffic_no_longer_changes(browser_client, viewer, at_step_2):
    Rollout.objects.filter(pk=at_step_2.pk).update(state=Rollout.LIVE, finished_at=timezone.now())
    data = browser_client(viewer).get(f"/rollouts/{at_step_2.pk}/traffic/").json()
    assert data["live"] is False
