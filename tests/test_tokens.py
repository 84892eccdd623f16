from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from console.accounts.models import ApiToken
from console.accounts.services import token_create, token_revoke

pytestmark = pytest.mark.django_db
ME = "/api/v1/me/"


def bearer(raw):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_a_token_authenticates_its_user_and_records_last_use(engineer):
    issued = token_create(user=engineer, name="ci")
    response = bearer(issued.raw).get(ME)
    assert response.status_code == 200
    assert response.json()["username"] == engineer.username
    assert "engineer" in response.json()["roles"]
    issued.token.refresh_from_db()
    assert issued.token.last_used_at is not None


def test_only_a_hash_and_a_prefix_are_stored(engineer):
    issued = token_create(user=engineer, name="ci")
    row = ApiToken.objects.get()
    assert issued.raw not in (row.digest, row.prefix)
    assert issued.raw.startswith(row.prefix)
    assert len(row.digest) == 64


@pytest.mark.parametrize(
    "header, words",
    [
        (None, "credentials were not provided"),
        ("Bearer mg_not-a-real-token", "Invalid token"),
        ("Bearer", "Bearer <token>"),
        ("Bearer a b", "Bearer <token>"),
    ],
)
def test_missing_or_bad_tokens_are_401_with_a_reason(header, words):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(ME)
    assert response.status_code == 401
    assert words in response.json()["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_revoked_token_is_refused(engineer):
    issued = token_create(user=engineer, name="ci")
    token_revoke(user=engineer, token_id=issued.token.id)
    response = bearer(issued.raw).get(ME)
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_an_expired_token_is_refused(engineer):
    issued = token_create(user=engineer, name="ci", expires_at=timezone.now() + timedelta(hours=1))
    ApiToken.objects.filter(pk=issued.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = bearer(issued.raw).get(ME)
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_a_user_cannot_revoke_someone_elses_token(engineer, viewer, browser_client):
    issued = token_create(user=engineer, name="ci")
    browser_client(viewer).post(f"/settings/tokens/{issued.token.id}/revoke/")
    assert bearer(issued.raw).get(ME).status_code == 200


def test_the_tokens_page_shows_a_new_token_once(engineer, browser_client):
    client = browser_client(engineer)
    created = client.post("/settings/tokens/", {"name": "github-actions"})
    assert created.status_code == 200
    raw = created.context["issued"].raw
    assert raw in created.content.decode()
    assert created["Cache-Control"] == "no-store"
    later = client.get("/settings/tokens/")
    assert raw not in later.content.decode()
    assert ApiToken.objects.get().prefix in later.content.decode()
    assert bearer(raw).get(ME).status_code == 200


def test_revoking_from_the_page_stops_the_token(engineer, browser_client):
    issued = token_create(user=engineer, name="ci")
    response = browser_client(engineer).post(f"/settings/tokens/{issued.token.id}/revoke/")
    assert response.status_code == 302
    assert bearer(issued.raw).get(ME).status_code == 401


def test_tokens_page_refuses_a_past_expiry(engineer, browser_client):
    response = browser_client(engineer).post("/settings/tokens/", {"name": "ci", "expires_on": "2001-01-01"})
    assert response.status_code == 400
    assert "future" in response.content.decode()
    assert not ApiToken.objects.exists()


# --- the token cache (console/accounts/token_cache.py) -------------------------------


def _tables_read(client, path) -> str:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        assert client.get(path).status_code == 200
    return " ".join(q["sql"] for q in queries.captured_queries)


def test_a_token_used_again_costs_no_token_or_permission_query(engineer):
    client = bearer(token_create(user=engineer, name="ci").raw)
    first = _tables_read(client, "/api/v1/models/")
    again = _tables_read(client, "/api/v1/models/")

    assert "accounts_apitoken" in first and "auth_permission" in first
    assert "accounts_apitoken" not in again and "auth_permission" not in again


def test_a_cached_token_revoked_is_refused_at_its_next_request(engineer):
    issued = token_create(user=engineer, name="ci")
    client = bearer(issued.raw)
    assert client.get(ME).status_code == 200

    token_revoke(user=engineer, token_id=issued.token.id)

    response = client.get(ME)
    assert response.status_code == 401 and "revoked" in response.json()["detail"]


def test_a_cached_token_whose_user_loses_the_role_loses_its_permissions_at_once(api, engineer):
    from django.contrib.auth.models import Group

    client = api(engineer)
    assert client.post("/api/v1/models/", {"name": "before"}, format="json").status_code != 403

    engineer.groups.remove(Group.objects.get(name="engineer"))

    assert client.post("/api/v1/models/", {"name": "after"}, format="json").status_code == 403


def test_a_cached_token_of_a_deactivated_user_is_refused(engineer):
    client = bearer(token_create(user=engineer, name="ci").raw)
    assert client.get(ME).status_code == 200

    engineer.is_active = False
    engineer.save()

    response = client.get(ME)
    assert response.status_code == 401 and "inactive" in response.json()["detail"]


def test_another_process_forgets_its_cached_tokens_when_the_shared_generation_moves(engineer):
    """A revoke served by another worker process bumps the generation in the shared cache;
    this process's entry no longer matches it, so the token is read again (and refused)."""
    from console.accounts import token_cache

    issued = token_create(user=engineer, name="ci")
    client = bearer(issued.raw)
    assert client.get(ME).status_code == 200
    # What the other process does: write the row and bump the shared number. This process's
    # entries stay in memory, as they would in a process that saw no signal.
    held = dict(token_cache._entries)
    token_revoke(user=engineer, token_id=issued.token.id)
    token_cache._entries.update(held)

    assert client.get(ME).status_code == 401
