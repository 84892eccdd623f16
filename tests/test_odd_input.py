"""Odd input anywhere gets a 4xx that names the problem, never a 500."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("method, path, body", [
    ("get", "/api/v1/models/?cursor=garbage", None),
    ("get", "/api/v1/models/x/versions/99999999999999999999/", None),
    ("get", "/api/v1/versions/?status=WHATEVER", None),
    ("post", "/api/v1/models/", {"name": {"nested": 1}}),
    ("post", "/api/v1/models/", {"name": "ok", "tags": {"k": {"v": 1}}}),
    ("post", "/api/v1/models/", ["a", "list"]),
    ("patch", "/api/v1/models/nope/", {"description": "x"}),
    ("post", "/api/v1/promotions/", {"model": "x", "version": 99999999999999999999, "environment": "e",
                                     "justification": "j"}),
    ("post", "/api/v1/promotions/", {"model": "x", "version": "one", "environment": "e", "justification": ""}),
    ("post", "/api/v1/promotions/424242/approve/", {}),
    ("get", "/api/v1/environments/none/history/?at=not-a-time", None),
    ("get", "/api/v1/audit/?until=31/12/2026", None),
])
def test_odd_api_input_is_a_4xx(api, admin_user, method, path, body):
    response = getattr(api(admin_user), method)(path, body, format="json")
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    assert response.json()["detail"]


@pytest.mark.parametrize("path", [
    "/models/?page=abc", "/models/?page=99999", "/models/nope/", "/models/nope/versions/1/",
    "/audit/?since=yesterday&page=-1", "/promotions/?state=bogus&page=x", "/promotions/9999/",
    "/environments/nope/", "/environments/nope/?model=x&at=garbage",
])
def test_odd_page_input_is_never_a_500(browser_client, admin_user, path):
    assert browser_client(admin_user).get(path).status_code < 500
