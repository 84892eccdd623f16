"""The promotion pages: request, review, comment, environments and their timelines."""

from datetime import datetime

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from console.accounts.roles import APPROVER
from console.audit.models import AuditEvent
from registry.models import RegisteredModel
from registry.promotions import services
from registry.promotions.models import Environment, LiveSpan, PromotionRequest, WebhookDelivery
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def iris(engineer, mlflow_store):
    model = factories.model(actor=engineer, name="iris")
    for logged in mlflow_store.template.models:
        factories.version(actor=engineer, model=model, logged=logged)
    return model


@pytest.fixture
def staging():
    return Environment.objects.create(
        name="staging", position=1, alias="staging", required_approvals=1, require_previous=False
    )


def _request(actor, model, env, number=2, **kwargs):
    return services.promotion_request(
        actor=actor,
        version=model.versions.get(version=number),
        environment=env,
        justification=kwargs.pop("justification", "Better accuracy."),
        **kwargs,
    )


def _aware(*args):
    return timezone.make_aware(datetime(*args))


def test_engineer_requests_a_promotion_from_the_version_page(browser_client, engineer, iris, staging):
    client = browser_client(engineer)
    page = client.get("/models/iris/versions/2/").content.decode()
    assert "Request promotion" in page and "/models/iris/versions/2/promote/" in page
    assert client.get("/models/iris/versions/2/promote/").status_code == 200

    response = client.post(
        "/models/iris/versions/2/promote/", {"environment": staging.pk, "justification": "Four points better."}
    )
    req = PromotionRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/promotions/{req.pk}/"
    html = client.get(response["Location"]).content.decode()
    assert "Pending approval" in html and "Four points better." in html
    assert "serving signature" in html and "The version has a serving signature." in html
    assert "Nothing serves iris in staging yet" in html
    # The version page lists the request it now has.
    assert f"/promotions/{req.pk}/" in client.get("/models/iris/versions/2/").content.decode()


def test_request_without_a_justification_keeps_the_form(browser_client, engineer, iris, staging):
    response = browser_client(engineer).post(
        "/models/iris/versions/2/promote/", {"environment": staging.pk, "justification": "  "}
    )
    assert response.status_code == 400
    assert not PromotionRequest.objects.exists()


def test_approver_sees_the_request_in_the_inbox_and_approves_with_htmx(
    browser_client, engineer, approver, iris, staging
):
    req = _request(engineer, iris, staging)
    client = browser_client(approver)
    inbox = client.get("/promotions/inbox/").content.decode()
    assert "Waiting for my review" in inbox and f"/promotions/{req.pk}/" in inbox

    detail = client.get(f"/promotions/{req.pk}/").content.decode()
    assert f'hx-post="/promotions/{req.pk}/approve/"' in detail and 'id="review-panel"' in detail

    response = client.post(f"/promotions/{req.pk}/approve/", {"approve-comment": "Looks good."}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html and 'id="review-panel"' in html
    assert "Approved" in html and "Looks good." in html and "ada-approver" in html
    assert f"/promotions/{req.pk}/approve/" not in html  # nothing left to approve
    req.refresh_from_db()
    assert req.state == PromotionRequest.APPROVED
    assert "No review is waiting" not in client.get("/promotions/inbox/").content.decode()
    assert "Nothing waits for your review" in client.get("/promotions/inbox/").content.decode()


def test_approve_without_javascript_redirects_to_the_request(browser_client, engineer, approver, iris, staging):
    req = _request(engineer, iris, staging)
    response = browser_client(approver).post(f"/promotions/{req.pk}/approve/", {})
    assert response.status_code == 302 and response["Location"] == f"/promotions/{req.pk}/"
    req.refresh_from_db()
    assert req.state == PromotionRequest.APPROVED


def test_reject_needs_a_comment(browser_client, engineer, approver, iris, staging):
    req = _request(engineer, iris, staging)
    client = browser_client(approver)
    refused = client.post(f"/promotions/{req.pk}/reject/", {"reject-comment": ""}, HTTP_HX_REQUEST="true")
    assert refused.status_code == 400 and "is required" in refused.content.decode()
    response = client.post(
        f"/promotions/{req.pk}/reject/", {"reject-comment": "Not on a Friday."}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200 and "Rejected" in response.content.decode()
    req.refresh_from_db()
    assert req.state == PromotionRequest.REJECTED
    again = client.post(f"/promotions/{req.pk}/approve/", {})
    assert again.status_code == 409 and "only pending requests" in again.content.decode()


def test_requester_cannot_approve_their_own_request(browser_client, engineer, iris, staging):
    engineer.groups.add(Group.objects.get(name=APPROVER))  # may both request and review
    req = _request(engineer, iris, staging)
    client = browser_client(engineer)
    response = client.post(f"/promotions/{req.pk}/approve/", {})
    assert response.status_code == 403
    assert "another approver must review it" in response.content.decode()
    htmx = client.post(f"/promotions/{req.pk}/approve/", {}, HTTP_HX_REQUEST="true")
    assert htmx.status_code == 403 and "another approver must review it" in htmx.content.decode()
    req.refresh_from_db()
    assert req.state == PromotionRequest.PENDING and not req.reviews.exists()


def test_viewer_sees_no_actions_and_cannot_approve(browser_client, engineer, viewer, iris, staging):
    req = _request(engineer, iris, staging)
    client = browser_client(viewer)
    html = client.get(f"/promotions/{req.pk}/").content.decode()
    for action in ("/approve/", "/reject/", "/cancel/", "/comment/"):
        assert action not in html, action
    assert "Request promotion" not in client.get("/models/iris/versions/2/").content.decode()
    assert client.get("/models/iris/versions/2/promote/").status_code == 403
    assert client.post(f"/promotions/{req.pk}/approve/", {}).status_code == 403
    req.refresh_from_db()
    assert req.state == PromotionRequest.PENDING


def test_requester_can_cancel_their_request(browser_client, engineer, approver, iris, staging):
    req = _request(engineer, iris, staging)
    assert "/cancel/" not in browser_client(approver).get(f"/promotions/{req.pk}/").content.decode()
    client = browser_client(engineer)
    assert f"/promotions/{req.pk}/cancel/" in client.get(f"/promotions/{req.pk}/").content.decode()
    response = client.post(f"/promotions/{req.pk}/cancel/", {"reason": "wrong version"})
    assert response.status_code == 302
    req.refresh_from_db()
    assert req.state == PromotionRequest.CANCELLED


def test_failing_metric_gate_shows_blocked_and_the_reason(browser_client, engineer, iris, staging):
    staging.metric_thresholds = [{"metric": "accuracy", "op": ">=", "value": 0.99}]
    staging.save()
    req = _request(engineer, iris, staging, number=1)
    assert req.state == PromotionRequest.BLOCKED
    html = browser_client(engineer).get(f"/promotions/{req.pk}/").content.decode()
    assert "Blocked" in html
    assert "accuracy = 0.91, but the policy requires &gt;= 0.99." in html
    assert "0.9100" in html  # the candidate's run metrics


def test_detail_compares_the_candidate_with_the_live_version(browser_client, engineer, iris, staging):
    LiveSpan.objects.create(environment=staging, model=iris, version_number=1, started_at=timezone.now())
    req = _request(engineer, iris, staging, number=2)
    html = browser_client(engineer).get(f"/promotions/{req.pk}/").content.decode()
    assert "Live now" in html and "0.9100" in html and "0.9500" in html
    assert "Inputs match v1" in html


def test_request_list_filters_and_answers_htmx_with_a_partial(browser_client, engineer, viewer, iris, staging):
    req = _request(engineer, iris, staging)
    client = browser_client(viewer)
    assert f"/promotions/{req.pk}/" in client.get("/promotions/").content.decode()
    partial = client.get("/promotions/", {"state": "rejected"}, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in partial and "No requests match" in partial
    assert (
        f"/promotions/{req.pk}/"
        in client.get("/promotions/", {"environment": "staging", "model": "iris"}).content.decode()
    )


def test_environment_timeline_answers_which_version_served_when(browser_client, viewer, iris, staging):
    LiveSpan.objects.create(
        environment=staging,
        model=iris,
        version_number=1,
        started_at=_aware(2024, 1, 1, 10),
        ended_at=_aware(2024, 2, 1, 10),
    )
    LiveSpan.objects.create(environment=staging, model=iris, version_number=2, started_at=_aware(2024, 2, 1, 10))
    client = browser_client(viewer)
    html = client.get("/environments/staging/").content.decode()
    assert "2024-02-01 10:00:00" in html and "now" in html

    then = client.get("/environments/staging/", {"model": "iris", "at": "2024-01-15T12:00"}).content.decode()
    assert 'class="answer"' in then and "was served by" in then and "v1</a>" in then.split('class="answer"')[1]
    later = client.get("/environments/staging/", {"model": "iris", "at": "2024-03-01T00:00"}).content.decode()
    assert "v2</a>" in later.split('class="answer"')[1]
    before = client.get("/environments/staging/", {"model": "iris", "at": "2023-06-01T00:00"}).content.decode()
    assert "nothing was live" in before


def test_environments_page_shows_policy_and_what_is_live(browser_client, viewer, iris, staging):
    LiveSpan.objects.create(environment=staging, model=iris, version_number=2, started_at=timezone.now())
    html = browser_client(viewer).get("/environments/").content.decode()
    assert "staging" in html and "the approver role" in html and "/models/iris/versions/2/" in html
    assert "/environments/staging/edit/" not in html and "/environments/new/" not in html


def test_admin_saves_thresholds_with_an_audit_event(browser_client, admin_user, staging):
    client = browser_client(admin_user)
    assert client.get("/environments/staging/edit/").status_code == 200
    data = {
        "name": "staging",
        "position": 1,
        "alias": "staging",
        "required_approvals": 2,
        "request_ttl_hours": 72,
        "require_signature": "on",
        "thresholds": "accuracy >= 0.9\n",
    }
    response = client.post("/environments/staging/edit/", data)
    assert response.status_code == 302, response.content.decode()
    staging.refresh_from_db()
    assert staging.metric_thresholds == [{"metric": "accuracy", "op": ">=", "value": 0.9}]
    assert staging.required_approvals == 2 and not staging.require_servable
    event = AuditEvent.objects.get(verb="environment.updated")
    assert event.after["metric_thresholds"] == staging.metric_thresholds
    assert event.before["required_approvals"] == 1 and "webhook_secret_changed" not in event.after


def test_bad_threshold_line_is_refused_naming_the_line(browser_client, admin_user, staging):
    data = {
        "name": "staging",
        "position": 1,
        "alias": "staging",
        "required_approvals": 1,
        "request_ttl_hours": 72,
        "thresholds": "accuracy >= 0.9\nrecall => lots",
    }
    response = browser_client(admin_user).post("/environments/staging/edit/", data)
    assert response.status_code == 400
    assert "Line 2" in response.content.decode() and "recall =&gt; lots" in response.content.decode()
    staging.refresh_from_db()
    assert staging.metric_thresholds == [] and not AuditEvent.objects.filter(verb="environment.updated").exists()


def test_engineer_cannot_edit_environments(browser_client, engineer, staging):
    client = browser_client(engineer)
    assert client.get("/environments/staging/edit/").status_code == 403
    assert client.post("/environments/staging/edit/", {"name": "x"}).status_code == 403
    assert client.get("/environments/new/").status_code == 403
    assert client.get("/environments/staging/webhooks/").status_code == 403


def test_admin_creates_an_environment(browser_client, admin_user, staging):
    data = {
        "name": "production",
        "position": 2,
        "alias": "production",
        "required_approvals": 2,
        "request_ttl_hours": 24,
        "require_previous": "on",
        "thresholds": "accuracy >= 0.95",
    }
    response = browser_client(admin_user).post("/environments/new/", data)
    assert response.status_code == 302 and response["Location"] == "/environments/production/"
    assert Environment.objects.get(name="production").metric_thresholds[0]["value"] == 0.95
    assert AuditEvent.objects.filter(verb="environment.created", object_repr="production").exists()


def test_webhook_secret_is_write_only(browser_client, admin_user, staging):
    client = browser_client(admin_user)
    secret = "s3cret-never-shown-9f8e7d"
    data = {
        "name": "staging",
        "position": 1,
        "alias": "staging",
        "required_approvals": 1,
        "request_ttl_hours": 72,
        "webhook_url": "https://hooks.example.com/modelgate",
        "new_webhook_secret": secret,
    }
    assert client.post("/environments/staging/edit/", data).status_code == 302
    staging.refresh_from_db()
    assert staging.webhook_secret == secret
    html = client.get("/environments/staging/edit/").content.decode()
    assert secret not in html and "a secret is set" in html
    event = AuditEvent.objects.get(verb="environment.updated")
    assert event.after["webhook_secret_changed"] is True and secret not in str(event.after) + str(event.before)
    # Saving again without a new secret keeps it.
    data.pop("new_webhook_secret")
    assert client.post("/environments/staging/edit/", data).status_code == 302
    staging.refresh_from_db()
    assert staging.webhook_secret == secret


def test_admin_sees_webhook_deliveries(browser_client, admin_user, staging):
    WebhookDelivery.objects.create(
        environment=staging,
        event="promotion.approved",
        payload={},
        url="https://x.test/",
        state=WebhookDelivery.FAILED,
        attempts=3,
        last_status=502,
        last_error="Bad gateway",
    )
    html = browser_client(admin_user).get("/environments/staging/webhooks/").content.decode()
    assert "promotion.approved" in html and "Bad gateway" in html and "502" in html


def test_comment_thread_shows_a_reply_under_its_parent(browser_client, engineer, approver, iris, staging):
    req = _request(engineer, iris, staging)
    assert (
        browser_client(approver).post(f"/promotions/{req.pk}/comment/", {"body": "Which dataset?"}).status_code == 302
    )
    parent = req.comments.get()
    client = browser_client(engineer)
    response = client.post(f"/promotions/{req.pk}/comment/", {"body": "The March holdout.", "reply_to": parent.pk})
    assert response.status_code == 302
    reply = req.comments.exclude(pk=parent.pk).get()
    assert reply.reply_to_id == parent.pk
    html = client.get(f"/promotions/{req.pk}/").content.decode()
    parent_at = html.index(f'id="comment-{parent.pk}"')
    replies_at = html.index("comment-replies", parent_at)
    assert parent_at < replies_at < html.index(f'id="comment-{reply.pk}"')
    assert "Which dataset?" in html and "The March holdout." in html
    empty = client.post(f"/promotions/{req.pk}/comment/", {"body": ""})
    assert empty.status_code == 400


def test_alias_drift_is_shown_and_restored(browser_client, admin_user, viewer, iris, staging):
    RegisteredModel.objects.filter(pk=iris.pk).update(aliases={"staging": 2})  # moved in MLflow behind our back
    assert 'hx-get="/models/iris/drift/"' in browser_client(viewer).get("/models/iris/").content.decode()
    fragment = browser_client(viewer).get("/models/iris/drift/", HTTP_HX_REQUEST="true").content.decode()
    assert "Alias 'staging'" in fragment and "points to v2 in MLflow" in fragment
    assert "Restore" not in fragment
    client = browser_client(admin_user)
    assert "Restore" in client.get("/models/iris/drift/", HTTP_HX_REQUEST="true").content.decode()
    response = client.post("/models/iris/aliases/staging/restore/")
    assert response.status_code == 302 and response["Location"] == "/models/iris/"
    iris.refresh_from_db()
    assert "staging" not in iris.aliases
    assert "points to" not in client.get("/models/iris/drift/").content.decode()


def test_nav_links_to_approvals_and_environments(browser_client, viewer):
    html = browser_client(viewer).get("/models/").content.decode()
    assert 'href="/promotions/inbox/"' in html and 'href="/environments/"' in html


@pytest.mark.parametrize("path", ["/promotions/", "/promotions/inbox/", "/environments/", "/environments/staging/"])
def test_users_without_a_role_cannot_read_promotion_pages(browser_client, nobody, staging, path):
    assert browser_client(nobody).get(path).status_code == 403


def test_unknown_request_and_environment_are_404(browser_client, viewer):
    client = browser_client(viewer)
    assert client.get("/promotions/999/").status_code == 404
    response = client.get("/environments/nowhere/")
    assert response.status_code == 404 and "does not exist" in response.content.decode()
