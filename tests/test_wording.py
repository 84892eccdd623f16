"""Words people read: times "ago", object types by their names, the admin's plurals."""

from datetime import timedelta

import pytest
from django.utils import timezone

from console.audit.services import audit_record
from console.templatetags.console_extras import ago, model_label
from registry.promotions import services

pytestmark = pytest.mark.django_db


def test_under_a_minute_ago_reads_just_now():
    now = timezone.now()
    assert ago(now) == "just now"
    assert ago(now - timedelta(seconds=59)) == "just now"
    assert ago(now + timedelta(seconds=5)) == "just now"  # a clock slightly ahead of ours


def test_older_times_read_as_time_ago():
    assert ago(timezone.now() - timedelta(minutes=3, seconds=5)) == "3\xa0minutes ago"
    assert ago(None) == ""


def test_a_request_made_a_moment_ago_says_just_now(browser_client, engineer, iris, staging):
    req = services.promotion_request(
        actor=engineer, version=iris.versions.get(version=2), environment=staging, justification="why"
    )
    html = browser_client(engineer).get(f"/promotions/{req.pk}/").content.decode()
    assert "just now" in html and "0\xa0minutes ago" not in html and "0 minutes ago" not in html


def test_object_types_read_as_their_models_verbose_names():
    assert model_label("promotions.promotionrequest") == "promotion request"
    assert model_label("registry.registeredmodel") == "registered model"
    assert model_label("gone.model") == "gone.model"
    assert model_label("not a type") == "not a type"


def test_the_audit_page_shows_human_names_not_app_labels(browser_client, engineer, viewer, iris, staging):
    services.promotion_request(
        actor=engineer, version=iris.versions.get(version=2), environment=staging, justification="why"
    )
    audit_record(actor=engineer, verb="x.y", object_type="t", object_id="1", object_repr="r")
    html = browser_client(viewer).get("/audit/").content.decode()
    assert 'title="promotions.promotionrequest">promotion request</span>' in html
    assert ">promotions.promotionrequest<" not in html
    assert 'title="t">t</span>' in html


def test_the_admin_says_webhook_deliveries(browser_client, admin_user):
    html = browser_client(admin_user).get("/admin/").content.decode()
    assert "Webhook deliveries" in html and "Webhook deliverys" not in html
