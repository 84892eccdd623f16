"""The navigation by role: admins get the Django admin, approvers a count of the requests
waiting for them (one query), and only reviewers are offered "My approvals"."""

import re

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from registry.promotions import selectors, services
from registry.promotions.models import Environment

pytestmark = pytest.mark.django_db


def _nav(html: str) -> str:
    return re.search(r'<nav class="mainnav".*?</nav>', html, re.S).group(0)


def _request(engineer, iris, env, number=2):
    return services.promotion_request(
        actor=engineer, version=iris.versions.get(version=number), environment=env, justification="why"
    )


@pytest.mark.parametrize(
    "role, sees", [("viewer", False), ("engineer", False), ("approver", False), ("admin_user", True)]
)
def test_only_admins_get_an_admin_link(request, browser_client, role, sees):
    nav = _nav(browser_client(request.getfixturevalue(role)).get("/models/").content.decode())
    assert ('href="/admin/">Admin</a>' in nav) is sees


def test_the_admin_link_opens_the_django_admin_for_an_admin(browser_client, admin_user):
    assert browser_client(admin_user).get("/admin/").status_code == 200


def test_approvers_see_how_many_requests_wait_for_them(browser_client, engineer, approver, iris, staging):
    client = browser_client(approver)
    assert "nav-count" not in _nav(client.get("/models/").content.decode())

    req = _request(engineer, iris, staging)
    nav = _nav(client.get("/models/").content.decode())
    assert re.search(r'class="badge badge-warning nav-count"[^>]*>1<', nav)
    assert "waiting for your review" in nav

    services.promotion_approve(actor=approver, request_id=req.pk, comment="ok")
    assert "nav-count" not in _nav(client.get("/models/").content.decode())


@pytest.mark.parametrize("role", ["viewer", "engineer", "admin_user"])
def test_users_who_do_not_review_see_no_count(request, browser_client, engineer, iris, staging, role):
    _request(engineer, iris, staging)
    nav = _nav(browser_client(request.getfixturevalue(role)).get("/models/").content.decode())
    assert "nav-count" not in nav


def test_the_count_is_one_query_and_agrees_with_the_inbox(engineer, approver, iris, staging):
    rules = {"require_previous": False}
    production = Environment.objects.create(
        name="production", position=2, alias="production", required_approvals=2, **rules
    )
    mine = Environment.objects.create(
        name="team", position=3, alias="team", approver_group=Group.objects.create(name="team"), **rules
    )
    waiting = _request(engineer, iris, staging)
    reviewed = _request(engineer, iris, production)
    services.promotion_approve(actor=approver, request_id=reviewed.pk, comment="one of two")
    _request(engineer, iris, mine)  # another group's approvers review it

    with CaptureQueriesContext(connection) as queries:
        count = selectors.inbox_count(approver)

    assert len(queries) == 1
    assert count == 1 and [r.pk for r in selectors.inbox(approver)] == [waiting.pk]
    approver.groups.add(mine.approver_group)
    assert selectors.inbox_count(approver) == selectors.inbox(approver).count() == 2


@pytest.mark.parametrize("role, sees", [("viewer", False), ("engineer", False), ("approver", True)])
def test_only_reviewers_are_offered_my_approvals(request, browser_client, role, sees):
    client = browser_client(request.getfixturevalue(role))
    assert ("My approvals" in client.get("/promotions/").content.decode()) is sees
    assert ("Waiting for my review" in client.get("/promotions/inbox/").content.decode()) is sees
