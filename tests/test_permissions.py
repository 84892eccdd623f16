"""Every role against every registry action, in the API and in the pages."""

import pytest

from tests import factories

pytestmark = pytest.mark.django_db

ROLES = ["viewer", "engineer", "approver", "admin_user", "nobody"]
CAN_READ = {"viewer", "engineer", "approver", "admin_user"}
CAN_WRITE = {"engineer", "admin_user"}


@pytest.fixture
def demo(engineer, mlflow_store):
    model = factories.model(actor=engineer, name="iris")
    factories.version(actor=engineer, model=model, logged=mlflow_store.template.models[0])
    return model


def _expected(role, allowed):
    return role in allowed


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    "method, path, body, allowed",
    [
        ("get", "/api/v1/models/", None, CAN_READ),
        ("get", "/api/v1/models/iris/", None, CAN_READ),
        ("get", "/api/v1/models/iris/versions/", None, CAN_READ),
        ("get", "/api/v1/models/iris/versions/1/", None, CAN_READ),
        ("get", "/api/v1/versions/", None, CAN_READ),
        ("get", "/api/v1/audit/", None, CAN_READ),
        ("post", "/api/v1/models/", {"name": "new-one"}, CAN_WRITE),
        ("patch", "/api/v1/models/iris/", {"description": "x"}, CAN_WRITE),
        ("post", "/api/v1/models/iris/versions/", {"source": "models:/iris/1"}, CAN_WRITE),
        ("patch", "/api/v1/models/iris/versions/1/", {"description": "x"}, CAN_WRITE),
        ("post", "/api/v1/sync/", None, {"admin_user"}),
    ],
)
def test_api_permissions(request, api, demo, role, method, path, body, allowed):
    user = request.getfixturevalue(role)
    response = getattr(api(user), method)(path, body, format="json")
    if role in allowed:
        assert response.status_code < 400, response.json()
    else:
        assert response.status_code == 403
        assert "permission" in response.json()["detail"]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    "method, path, data, allowed",
    [
        ("get", "/models/", None, CAN_READ),
        ("get", "/models/iris/", None, CAN_READ),
        ("get", "/models/iris/versions/1/", None, CAN_READ),
        ("get", "/audit/", None, CAN_READ),
        ("get", "/models/new/", None, CAN_WRITE),
        ("post", "/models/new/", {"name": "from-ui"}, CAN_WRITE),
        ("post", "/models/iris/edit/", {"description": "d", "tags": ""}, CAN_WRITE),
        ("get", "/models/iris/versions/new/", None, CAN_WRITE),
        ("post", "/models/iris/versions/1/edit/", {"description": "d", "tags": ""}, CAN_WRITE),
        ("post", "/models/sync/", None, {"admin_user"}),
    ],
)
def test_page_permissions(request, browser_client, demo, role, method, path, data, allowed):
    user = request.getfixturevalue(role)
    response = getattr(browser_client(user), method)(path, data or {})
    if role in allowed:
        assert response.status_code in (200, 302), response.status_code
    else:
        assert response.status_code == 403


@pytest.mark.parametrize("path", ["/models/", "/models/iris/", "/audit/", "/settings/tokens/"])
def test_anonymous_visitors_are_sent_to_login(client, demo, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_anonymous_api_calls_get_401(client, demo):
    assert client.get("/api/v1/models/").status_code == 401


def test_viewer_sees_no_action_buttons(browser_client, viewer, demo):
    client = browser_client(viewer)
    for path in ("/models/", "/models/iris/", "/models/iris/versions/1/"):
        html = client.get(path).content.decode()
        for action in ("New model", "Register version", "Sync now", "/edit/"):
            assert action not in html, (path, action)


def test_engineer_sees_the_actions(browser_client, engineer, demo):
    html = browser_client(engineer).get("/models/iris/").content.decode()
    assert "Register version" in html and "/models/iris/edit/" in html


def test_forms_need_csrf(engineer, demo):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(engineer)
    assert client.post("/models/new/", {"name": "no-csrf"}).status_code == 403
