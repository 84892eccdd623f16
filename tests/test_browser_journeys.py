"""The journeys people take, in a real browser (the system Chromium, driven by Playwright),
against a live server with a worker thread and real local model servers."""

import json
import logging
import re
import threading
import time
import urllib.request

import pytest
from playwright.sync_api import expect

from deployer import loadgen
from deployer.metrics.collect import scrape_deployment
from deployer.models import Deployment, Rollout
from registry.promotions import services as promotions
from registry.promotions.models import PromotionRequest
from tests.deployer_fixtures import predict_sender

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _request_in_browser(page, model: str, version: int, environment: str, why: str) -> int:
    page.goto("/models/")
    page.fill("input[name=q]", model)
    page.get_by_role("link", name=model, exact=True).click()
    page.get_by_role("link", name=f"v{version}", exact=True).first.click()
    page.get_by_role("link", name="Request promotion").click()
    page.select_option("select[name=environment]", label=environment)
    page.fill("textarea[name=justification]", why)
    page.get_by_role("button", name="Request promotion").click()
    page.wait_for_url(re.compile(r"/promotions/\d+/$"))
    return int(page.url.rstrip("/").rsplit("/", 1)[1])


def _approve_in_browser(page, request_id: int, comment: str) -> None:
    page.goto("/promotions/inbox/")
    page.locator(f"a[href='/promotions/{request_id}/']").first.click()
    page.fill("textarea[name=approve-comment]", comment)
    page.evaluate("window.stillTheSamePage = true")  # gone if anything reloads the page
    page.get_by_role("button", name="Approve").click()


def _watch_until_live(page, request_id: int) -> None:
    """On the request page: the rollout panel appears and its steps update without a reload."""
    steps = page.locator(".rollout-steps")
    expect(steps).to_be_visible(timeout=30_000)
    expect(steps.locator(".step")).to_have_count(6)
    expect(steps).to_contain_text("Live", timeout=90_000)
    expect(steps.locator(".step-done")).to_have_count(6)


def _expect_the_whole_page_says_live(page, environment: str, version: int) -> None:
    """After the rollout, on the page that watched it: the header badge, the Decision card and
    "Live now" agree with the steps."""
    expect(page.locator("#state-badge")).to_have_text("Live", timeout=30_000)
    decision = page.locator("#review-panel")
    expect(decision).to_contain_text("Live")
    expect(decision).not_to_contain_text("waiting for deployment")
    compare = page.locator("#live-compare")
    expect(compare).to_contain_text(f"Live in {environment}: v{version}, this request's version")
    expect(compare).not_to_contain_text("Nothing serves")


def test_request_approve_watch_it_go_live_see_traffic_roll_back_and_read_the_audit(
    login, worker, engineer, approver, iris, staging_local
):
    eng = login(engineer)
    first = _request_in_browser(eng, "iris", 1, "staging", "first release")
    expect(eng.locator("body")).to_contain_text("Pending approval")

    app = login(approver)
    _approve_in_browser(app, first, "looks good")
    _watch_until_live(app, first)
    _expect_the_whole_page_says_live(app, "staging", 1)
    assert app.evaluate("window.stillTheSamePage") is True
    assert PromotionRequest.objects.get(pk=first).state == PromotionRequest.LIVE

    # v2 goes live too (through the services, to keep the test short), so there is a
    # revision to roll back to.
    second = promotions.promotion_request(
        actor=engineer, version=iris.versions.get(version=2), environment=staging_local.environment, justification="v2"
    )
    promotions.promotion_approve(actor=approver, request_id=second.pk, comment="ok")
    deployment = Deployment.objects.get(model=iris)
    for _ in range(90):
        deployment.refresh_from_db()
        if deployment.live_rollout and deployment.live_rollout.version.version == 2:
            break
        eng.wait_for_timeout(1000)
    assert deployment.live_rollout.version.version == 2

    # The charts receive data while loadgen runs.
    eng.goto(f"/deployments/{deployment.pk}/")
    stop = threading.Event()

    def traffic():
        scrape_deployment(deployment.pk)
        while not stop.is_set():
            loadgen.run(
                predict_sender(deployment.local_port),
                signature=iris.versions.get(version=2).signature,
                rps=20,
                duration=2,
            )
            scrape_deployment(deployment.pk)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        totals = eng.locator("#metrics [data-role=totals]")
        expect(totals).to_contain_text("requests in the window", timeout=30_000)
        assert eng.locator("#metrics canvas").count() >= 4
    finally:
        stop.set()
        thread.join(timeout=30)

    # Roll back to revision 1 through the approval policy.
    eng.goto(f"/deployments/{deployment.pk}/")
    row = eng.locator("#history tr", has_text="v1")
    row.locator("summary", has_text="Roll back to this").click()
    row.locator("textarea[name=justification]").fill("v2 misbehaves")
    row.get_by_role("button", name=re.compile("Request rollback|Roll back")).click()
    eng.wait_for_url(re.compile(r"/promotions/\d+/$"))
    rollback = int(eng.url.rstrip("/").rsplit("/", 1)[1])
    assert PromotionRequest.objects.get(pk=rollback).is_rollback
    _approve_in_browser(app, rollback, "roll it back")
    app.goto(f"/promotions/{rollback}/")
    _watch_until_live(app, rollback)
    deployment.refresh_from_db()
    assert deployment.live_rollout.version.version == 1

    # The audit trail tells the story.
    app.goto("/audit/")
    audit = app.locator("main")
    for verb in ("promotion.requested", "promotion.approved", "rollout.created", "rollout.live", "promotion.live"):
        expect(audit).to_contain_text(verb)


def test_a_viewer_sees_no_action_buttons_and_the_actions_answer_403(login, viewer, engineer, iris, staging_local):
    from deployer.services import deployment_get_or_create

    deployment = deployment_get_or_create(target=staging_local, model=iris)
    Rollout.objects.create(deployment=deployment, revision=1, version=iris.versions.get(version=1), state=Rollout.LIVE)
    Deployment.objects.filter(pk=deployment.pk).update(
        state=Deployment.SERVING, live_rollout=deployment.rollouts.first()
    )
    req = promotions.promotion_request(
        actor=engineer, version=iris.versions.get(version=2), environment=staging_local.environment, justification="v2"
    )
    page = login(viewer)
    page.goto(f"/deployments/{deployment.pk}/")
    expect(page.locator("h1")).to_contain_text("iris")
    for label in ("Redeploy", "Undeploy", "Roll back to this"):
        expect(page.get_by_text(label, exact=True)).to_have_count(0)
    page.goto(f"/promotions/{req.pk}/")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    page.goto("/models/iris/versions/2/")
    expect(page.get_by_role("link", name="Request promotion")).to_have_count(0)

    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    for url, form in [
        (f"/deployments/{deployment.pk}/redeploy/", {}),
        (f"/deployments/{deployment.pk}/undeploy/", {"reason": "x"}),
        (f"/deployments/{deployment.pk}/rollback/", {"revision": "1", "justification": "x"}),
        (f"/promotions/{req.pk}/approve/", {"approve-comment": "x"}),
        ("/models/iris/versions/2/promote/", {"environment": "staging", "justification": "x"}),
    ]:
        response = page.request.post(url, form=form, headers={"X-CSRFToken": token, "Referer": page.url})
        assert response.status == 403, (url, response.status)
    assert Rollout.objects.count() == 1 and PromotionRequest.objects.count() == 1


def test_a_failing_gate_shows_its_reason(login, engineer, iris, staging_local, production):
    page = login(engineer)
    request_id = _request_in_browser(page, "iris", 1, "production", "straight to production")
    body = page.locator("body")
    expect(body).to_contain_text("Blocked")
    expect(body).to_contain_text("accuracy")
    assert PromotionRequest.objects.get(pk=request_id).state == PromotionRequest.BLOCKED


def test_an_approver_watches_a_canary_step_up_and_promotes_it_early(
    login, worker, sent_tasks, engineer, approver, iris, staging_local, mlflow_store
):
    """Issue 17's browser test: on the local backend, with loadgen calling the environment's
    label URL all along, a canary of v2 beside v1 takes 10 % and is judged a pass on its own
    numbers, then takes 50 % while the approver watches the rollout page update itself, and
    "Promote now" ends it live with the alias moved, clients answered 200 throughout. The test
    plays the metrics collector and celery beat (the canary controller); the worker fixture
    runs what they queue."""
    from tests.canary_flow import Traffic
    from tests.test_browser_csp import Watched

    env = staging_local.environment
    v2 = iris.versions.get(version=2)
    first = promotions.promotion_request(
        actor=engineer, version=iris.versions.get(version=1), environment=env, justification="v1"
    )
    promotions.promotion_approve(actor=approver, request_id=first.pk, comment="ok")
    deployment = _wait_for(lambda: Deployment.objects.filter(model=iris, live_rollout__version__version=1).first())
    # Staging's policy: a canary. Step 1 holds 20 s: MetricPoints are 10-second buckets and a
    # step's window takes the buckets that start inside it, so it always holds one whole bucket
    # of its own traffic; at 40 requests/s, 10 % is about 40 canary requests a bucket, twice
    # min_requests. With fewer the step fails, so it can only pass on a judged pass. Step 2 is
    # long so the approver has to promote early. The p95 rule allows 5 × stable's, not 1.5 ×:
    # beside Chromium on a shared 2-core machine a just-started canary's p95 of some 60
    # requests swings (8.3 ms against stable's 5.3 ms was seen), and millisecond noise is not
    # what this test is about (tests/test_canary_analysis.py pins the latency rule).
    plan = {
        "steps": [{"weight": 10, "seconds": 20}, {"weight": 50, "seconds": 600}],
        "analysis": {"min_requests": 20, "inconclusive": "fail", "max_p95_ratio": 5},
    }
    type(env).objects.filter(pk=env.pk).update(rollout_strategy="canary", canary_plan=plan)

    traffic = Traffic(predict_sender(deployment.local_port), v2.signature, rps=40)
    stop = threading.Event()

    def collector_and_beat():
        """Every second, what the metrics collector and beat's canary controller do."""
        from django.db import connection

        try:
            while not stop.wait(1):
                try:
                    scrape_deployment(deployment.pk)
                except Exception:  # a server restarting: the collector logs it and scrapes again
                    logging.getLogger(__name__).exception("test collector: scrape failed")
                sent_tasks.append(("deployer.reconcile_canaries", []))  # the worker thread runs it
        finally:
            connection.close()

    traffic.start()
    threading.Thread(target=collector_and_beat, name="test-beat", daemon=True).start()
    try:
        second = promotions.promotion_request(
            actor=engineer, version=v2, environment=env, justification="v2 as a canary"
        )
        assert second.plan["strategy"] == "canary"
        promotions.promotion_approve(actor=approver, request_id=second.pk, comment="canary it")
        rollout = _wait_for(lambda: Rollout.objects.filter(request=second).first())

        watched = Watched(login(approver))
        page = watched.page
        watched.visit(f"/rollouts/{rollout.pk}/")
        page.evaluate("window.stillTheSamePage = true")  # gone if anything reloads the page
        now = page.locator("#canary-now")
        expect(now).to_contain_text("Step 1 of 2", timeout=90_000)
        expect(now).to_contain_text("10 % of the traffic to the canary (v2)")
        expect(now.locator("[data-role=time-left]")).to_contain_text(re.compile(r"\d+ s left"))
        expect(page.locator('tr[data-step="1"]')).to_have_class(re.compile(r"\bcurrent\b"))

        # Step 1 is judged a pass on its numbers and step 2 begins at its weight, without a reload.
        expect(now).to_contain_text("Step 2 of 2", timeout=90_000)
        expect(now).to_contain_text("50 % of the traffic to the canary (v2)")
        rollout.refresh_from_db()
        verdict = rollout.canary["verdicts"][0]
        assert (verdict["step"], verdict["result"]) == (0, "pass"), verdict
        canary, stable = verdict["numbers"]["canary"], verdict["numbers"]["stable"]
        assert canary["requests"] >= 20 and canary["errors"] == 0, verdict
        assert stable["requests"] > canary["requests"] and stable["errors"] == 0, verdict
        first_row = page.locator('tr[data-step="1"]')
        expect(first_row.locator(".badge").nth(1)).to_have_text("passed")
        # The reason quotes both error rates, and the Canary and Stable cells the same numbers.
        expect(first_row).to_contain_text(
            f"canary error rate 0.0 % (0/{canary['requests']}) ≤ stable 0.0 % (0/{stable['requests']}) + 1.0 pp"
        )
        cells = first_row.locator("td")
        expect(cells.nth(5)).to_contain_text(f"0 % errors (0/{canary['requests']})")
        expect(cells.nth(6)).to_contain_text(f"0 % errors (0/{stable['requests']})")
        expect(cells.nth(5)).to_contain_text(re.compile(r"p95 [\d.]+ ms"))
        expect(first_row).to_contain_text(re.compile(r"canary p95 [\d.]+ ms ≤ 5\.0 × stable [\d.]+ ms"))
        assert page.evaluate("window.stillTheSamePage") is True
        assert str(mlflow_store.client().get_model_version_by_alias("iris", "staging").version) == "1"
        # The overlay charts drew and read the traffic: canary requests among the totals.
        totals = page.locator("#canary-charts [data-role=totals]")
        expect(totals).to_contain_text(re.compile(r"canary: [1-9]\d* requests, 0\.00 % errors"), timeout=30_000)
        expect(totals).to_contain_text(re.compile(r"stable: [1-9]\d* requests"))
        assert page.locator("#canary-charts canvas").count() >= 3

        # What is typed in the abort form survives the panel's polls.
        page.fill("textarea[name=reason]", "half-typed thought")
        page.wait_for_timeout(2500)
        assert page.input_value("textarea[name=reason]") == "half-typed thought"

        # Promote now: skip step 2's remaining ten minutes.
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Promote now").click()
        expect(page.locator(".alert-success")).to_contain_text(f"Revision {rollout.revision} promoted early")
        expect(page.locator("#canary-decision")).to_contain_text("Promoted early by ada-approver")
        steps = page.locator(".rollout-steps")
        expect(steps).to_contain_text("Live", timeout=90_000)
        expect(now).to_contain_text("Done: v2 took all the traffic")
        expect(page.get_by_role("button", name="Promote now")).to_have_count(0)
        expect(page.get_by_role("button", name="Abort")).to_have_count(0)
        expect(page.locator("#canary-live")).not_to_have_attribute("hx-trigger", re.compile(".*"))
        watched.collect()
        assert watched.problems == []
        # Traffic goes on a little past the hand-over to v2 alone.
        live = time.monotonic()
        _wait_for(lambda: traffic.answers and traffic.answers[-1][0] > live + 2, timeout=30)
    finally:
        stop.set()
        traffic.stop()

    rollout.refresh_from_db()
    assert rollout.state == Rollout.LIVE and rollout.canary["decision"]["actor"] == "ada-approver"
    assert [s["state"] for s in rollout.steps if s["name"] == "canary_step_1"] == ["skipped"]
    assert str(mlflow_store.client().get_model_version_by_alias("iris", "staging").version) == "2"
    assert PromotionRequest.objects.get(pk=second.pk).state == PromotionRequest.LIVE
    # Clients never noticed: every request through the label URL answered 200, before, during
    # and after the canary and the early promotion.
    assert len(traffic.answers) > 40 * 20, len(traffic.answers)
    assert traffic.statuses() == {200: len(traffic.answers)}, traffic.statuses()
    url = f"http://127.0.0.1:{deployment.local_port}/v1/models/iris/labels/staging/metadata"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert json.loads(response.read())["model_spec"]["version"] == "2"


def _wait_for(find, timeout: float = 90):
    """What ``find`` returns once it is truthy (the worker thread makes it so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"nothing after {timeout:.0f} s")
