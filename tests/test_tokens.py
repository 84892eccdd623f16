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
