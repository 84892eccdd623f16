"""Every role against every promotion action in the API (the pages: test_promotion_pages.py)."""

import pytest

from registry.promotions import services

pytestmark = pytest.mark.django_db

ROLES = ["viewer", "engineer", "approver", "admin_user", "nobody"]


@pytest.fixture
def pending(engineer, iris, staging):
    return services.promotion_request(
        actor=engineer, version=iris.versions.get(version=2), environment=staging, justification="j"
    )


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    "action, method, path, body, allowed",
    [
        ("list", "get", "/api/v1/promotions/", None, {"viewer", "engineer", "approver", "admin_user"}),
        ("detail", "get", "/api/v1/promotions/{pk}/", None, {"viewer", "engineer", "approver", "admin_user"}),
        (
            "request",
            "post",
            "/api/v1/promotions/",
            {"model": "iris", "version": 1, "environment": "staging", "justification": "j"},
            {"engineer", "admin_user"},
        ),
        ("approve", "post", "/api/v1/promotions/{pk}/approve/", {"comment": "ok"}, {"approver"}),
        ("reject", "post", "/api/v1/promotions/{pk}/reject/", {"comment": "no"}, {"approver"}),
        # Cancelling is for the requester (the engineer here) or an admin.
        ("cancel", "post", "/api/v1/promotions/{pk}/cancel/", {}, {"engineer", "admin_user"}),
        (
            "comment",
            "post",
            "/api/v1/promotions/{pk}/comments/",
            {"body": "hi"},
            {"engineer", "approver", "admin_user"},
        ),
        (
            "history",
            "get",
            "/api/v1/environments/staging/history/",
            None,
            {"viewer", "engineer", "approver", "admin_user"},
        ),
    ],
)
def test_promotion_api_permissions(request, api, pending, role, action, method, path, body, allowed):
    user = request.getfixturevalue(role)
    response = getattr(api(user), method)(path.format(pk=pending.pk), body, format="json")
    if role in allowed:
        assert response.status_code < 300, response.json()
    else:
        assert response.status_code == 403, (action, response.status_code)


@pytest.mark.parametrize(
    "role, allowed", [("viewer", False), ("engineer", False), ("approver", False), ("admin_user", True)]
)
def test_only_admins_edit_environments_and_policy(role, allowed, request):
    user = request.getfixturevalue(role)
    for perm in ("promotions.change_environment", "promotions.add_environment"):
        assert user.has_perm(perm) is allowed


ENV_FORM = {
    "name": "staging",
    "position": 1,
    "alias": "staging",
    "required_approvals": 2,
    "require_signature": "on",
    "require_servable": "on",
    "request_ttl_hours": 72,
    "thresholds": "",
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    "action, path, data, allowed",
    [
        (
            "request",
            "/models/iris/versions/1/promote/",
            {"environment": "__staging__", "justification": "j"},
            {"engineer", "admin_user"},
        ),
        ("approve", "/promotions/{pk}/approve/", {"approve-comment": "ok"}, {"approver"}),
        ("reject", "/promotions/{pk}/reject/", {"reject-comment": "no"}, {"approver"}),
        ("cancel", "/promotions/{pk}/cancel/", {}, {"engineer", "admin_user"}),
        ("comment", "/promotions/{pk}/comment/", {"body": "hi"}, {"engineer", "approver", "admin_user"}),
        ("edit environment", "/environments/staging/edit/", ENV_FORM, {"admin_user"}),
        (
            "edit policy",
            "/environments/new/",
            {**ENV_FORM, "name": "prod", "position": 5, "alias": "prod", "thresholds": "accuracy >= 0.9"},
            {"admin_user"},
        ),
    ],
)
def test_promotion_page_permissions(request, browser_client, pending, staging, role, action, path, data, allowed):
    user = request.getfixturevalue(role)
    data = {k: (staging.pk if v == "__staging__" else v) for k, v in data.items()}
    response = browser_client(user).post(path.format(pk=pending.pk), data)
    if role in allowed:
        assert response.status_code in (200, 302), (action, response.status_code)
    else:
        assert response.status_code == 403, (action, response.status_code)
