"""The request page while a request moves: its deployment panel polls, and every region
that shows the request's state (header badge, gates, decision, live comparison) follows
the state in the polling response, so no part of the page contradicts another."""

import re

import pytest
from django.utils import timezone

from registry.promotions import services
from registry.promotions.models import LiveSpan, PromotionRequest

pytestmark = pytest.mark.django_db

R = PromotionRequest


def poll_url(html: str) -> str | None:
    """Where the deployment panel polls, or None when it does not."""
    panel = re.search(r'<div id="deployment-panel"([^>]*)>', html)
    assert panel, "no deployment panel"
    found = re.search(r'hx-get="([^"]+)"', panel.group(1))
    return found.group(1).replace("&amp;", "&") if found else None


@pytest.fixture
def pending(engineer, iris, staging):
    return services.promotion_request(
        actor=engineer, version=iris.versions.get(version=2), environment=staging, justification="Better accuracy."
    )


def _goes_live(req):
    """What the deployer leaves behind, written directly: the rollout itself is not the point here."""
    PromotionRequest.objects.filter(pk=req.pk).update(state=R.LIVE, state_reason="Live.")
    LiveSpan.objects.filter(environment=req.environment, model=req.model, ended_at__isnull=True).update(
        ended_at=timezone.now()
    )
    LiveSpan.objects.create(
        environment=req.environment, model=req.model, version_number=req.version.version, started_at=timezone.now()
    )


def test_the_panel_polls_while_the_request_is_pending_approved_or_deploying(browser_client, approver, pending):
    client = browser_client(approver)
    for state in (R.PENDING, R.APPROVED, R.DEPLOYING):
        PromotionRequest.objects.filter(pk=pending.pk).update(state=state)
        html = client.get(f"/promotions/{pending.pk}/").content.decode()
        assert poll_url(html) == f"/promotions/{pending.pk}/?seen={state}.0", state


def test_an_unchanged_poll_answers_with_the_panel_alone(browser_client, approver, pending):
    client = browser_client(approver)
    url = poll_url(client.get(f"/promotions/{pending.pk}/").content.decode())

    html = client.get(url, HTTP_HX_REQUEST="true").content.decode()

    assert "<html" not in html and 'id="deployment-panel"' in html
    assert "hx-swap-oob" not in html and 'id="review-panel"' not in html


def test_a_poll_after_approval_swaps_the_badge_and_the_decision_out_of_band(
    browser_client, engineer, approver, pending
):
    client = browser_client(engineer)  # watching their own request
    url = poll_url(client.get(f"/promotions/{pending.pk}/").content.decode())
    services.promotion_approve(actor=approver, request_id=pending.pk, comment="Looks good.")

    html = client.get(url, HTTP_HX_REQUEST="true").content.decode()

    for region in ("request-headline", "gates-card", "review-panel", "live-compare"):
        assert re.search(rf'id="{region}"[^>]*hx-swap-oob="true"', html), region
    assert "Approved" in html and "Looks good." in html
    assert "Pending approval" not in html
    # the new panel polls with the state it now shows
    assert poll_url(html) == f"/promotions/{pending.pk}/?seen=approved.1"


def test_the_poll_that_sees_the_request_live_updates_every_region_and_stops(
    browser_client, engineer, approver, iris, staging, pending
):
    client = browser_client(engineer)
    services.promotion_approve(actor=approver, request_id=pending.pk, comment="ok")
    url = poll_url(client.get(f"/promotions/{pending.pk}/").content.decode())
    _goes_live(pending)

    html = client.get(url, HTTP_HX_REQUEST="true").content.decode()

    assert poll_url(html) is None  # final: the panel has no trigger any more
    assert "Nothing serves iris in staging yet" not in html
    assert "Approved, waiting" not in html and "Live" in html
    assert "Live in staging: v2, this request's version" in html


def test_a_live_request_does_not_compare_its_version_with_itself(browser_client, engineer, approver, pending):
    LiveSpan.objects.create(
        environment=pending.environment, model=pending.model, version_number=1, started_at=timezone.now()
    )
    client = browser_client(engineer)
    assert "Candidate against what is live" in client.get(f"/promotions/{pending.pk}/").content.decode()

    services.promotion_approve(actor=approver, request_id=pending.pk, comment="ok")
    _goes_live(pending)
    html = client.get(f"/promotions/{pending.pk}/").content.decode()

    assert "Candidate against what is live" not in html
    assert "this request's version" in html and html.count('class="card-title">Live now') == 1


def test_the_decision_card_says_its_approval_count_once(browser_client, engineer, approver, pending):
    client = browser_client(engineer)
    assert "0 of 1 approval required." in client.get(f"/promotions/{pending.pk}/").content.decode()

    services.promotion_approve(actor=approver, request_id=pending.pk, comment="ok")
    html = client.get(f"/promotions/{pending.pk}/").content.decode()

    assert "Approved by 1 of 1 required." in html
    assert "approval required." not in html
