"""Issue 11.5: the API is throttled per token, and guessing tokens from one address is
throttled too; both answer 429 with Retry-After and a sentence that says when to retry.
The counts live in the embedded default's database cache table (made by migrate)."""

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from console.accounts.services import token_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def rates(settings):
    def set_rates(**rates):
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], **rates},
        }

    return set_rates


def _client(raw, ip="198.51.100.20"):
    client = APIClient(REMOTE_ADDR=ip)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_the_embedded_default_counts_in_the_database_cache():
    assert django_settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.db.DatabaseCache"


def test_a_token_over_its_rate_gets_429_with_retry_after_and_other_tokens_do_not(viewer, rates):
    rates(token="3/minute")
    busy = _client(token_create(user=viewer, name="busy").raw)
    other = _client(token_create(user=viewer, name="other").raw)

    statuses = [busy.get("/api/v1/me/").status_code for _ in range(3)]
    refused = busy.get("/api/v1/models/")

    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    wait = int(refused["Retry-After"])
    assert 1 <= wait <= 60
    body = refused.json()
    assert body["error"] == "throttled" and body["retry_after"] == wait
    assert body["detail"] == f"Too many requests for this token (at most 3/minute). Retry in {wait} seconds."
    assert other.get("/api/v1/me/").status_code == 200


def test_a_throttled_write_changes_nothing(engineer, rates):
    from registry.models import RegisteredModel

    rates(token="1/minute")
    client = _client(token_create(user=engineer, name="ci").raw)
    client.get("/api/v1/me/")

    response = client.post("/api/v1/models/", {"name": "churn"}, format="json")

    assert response.status_code == 429
    assert not RegisteredModel.objects.filter(name="churn").exists()


def test_guessing_tokens_from_one_address_is_throttled_even_for_a_good_token(viewer, rates):
    rates(bearer_failure="5/minute")
    good = token_create(user=viewer, name="good").raw

    guesses = [_client(f"mg_guess{i}").get("/api/v1/me/").status_code for i in range(5)]
    refused = _client(good).get("/api/v1/me/")

    assert guesses == [401] * 5
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
    assert refused.json()["detail"].startswith("Too many failed token logins from this address. Retry in ")
    # Another address is not affected.
    assert _client(good, ip="198.51.100.21").get("/api/v1/me/").status_code == 200


def test_a_revoked_token_counts_as_a_failure(viewer, rates):
    from console.accounts.services import token_revoke

    rates(bearer_failure="2/minute")
    issued = token_create(user=viewer, name="old")
    token_revoke(user=viewer, token_id=issued.token.pk)

    assert [_client(issued.raw).get("/api/v1/me/").status_code for _ in range(3)] == [401, 401, 429]


def test_a_browser_session_is_throttled_per_user(browser_client, viewer, rates):
    rates(token="2/minute")
    client = browser_client(viewer)
    assert [client.get("/api/v1/me/").status_code for _ in range(3)] == [200, 200, 429]


@pytest.mark.parametrize("value", ["600", "ten/minute", "0/minute", "5/fortnight"])
def test_a_bad_rate_setting_stops_the_process_at_start(monkeypatch, value):
    from django.core.exceptions import ImproperlyConfigured

    from console.env import env_rate

    monkeypatch.setenv("API_RATE_LIMIT", value)
    with pytest.raises(ImproperlyConfigured, match="API_RATE_LIMIT"):
        env_rate("API_RATE_LIMIT", "600/minute")


def test_metrics_share_the_failed_token_count(client, viewer, rates):
    rates(bearer_failure="2/minute")
    good = token_create(user=viewer, name="prometheus").raw

    guesses = [client.get("/metrics", HTTP_AUTHORIZATION="Bearer mg_guess").status_code for _ in range(2)]
    refused = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {good}")

    assert guesses == [401, 401]
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    assert "Retry in" in refused.content.decode()
