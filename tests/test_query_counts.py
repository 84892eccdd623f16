"""List pages and list endpoints cost the same number of queries for 2 rows or 20."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from registry.models import ModelVersion, RegisteredModel

pytestmark = pytest.mark.django_db


def _mirror(models: int, versions: int):
    """Mirror rows written directly: the counts are about reading, not registering."""
    now = timezone.now()
    for m in range(models):
        model = RegisteredModel.objects.create(name=f"m{m:03}", created_at=now, updated_at=now, tags={"team": "t"},
                                               aliases={"production": 1}, latest_version=versions,
                                               version_count=versions)
        ModelVersion.objects.bulk_create(
            ModelVersion(model=model, version=v + 1, source=f"models:/m{m:03}/{v + 1}", created_at=now,
                         updated_at=now, aliases=["production"] if v == 0 else [], tags={"k": "v"})
            for v in range(versions))


def _counts_for_small_and_large_registry(fetch) -> tuple[int, int]:
    _mirror(2, 2)
    small = _count(fetch)
    RegisteredModel.objects.all().delete()
    _mirror(20, 20)
    return small, _count(fetch)


def _count(fn) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = fn()
    assert response.status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("path, expected", [
    ("/models/", 8),
    ("/models/m000/", 8),
])
def test_list_pages_have_a_pinned_query_count(browser_client, viewer, path, expected):
    client = browser_client(viewer)
    small, large = _counts_for_small_and_large_registry(lambda: client.get(path))
    assert small == large == expected


@pytest.mark.parametrize("path, expected", [
    ("/api/v1/models/", 4),
    ("/api/v1/models/m000/versions/", 5),
    ("/api/v1/versions/", 4),
])
def test_list_endpoints_have_a_pinned_query_count(api, viewer, path, expected):
    client = api(viewer)
    client.get("/api/v1/me/")  # the token's first use writes last_used_at; keep it out of the count
    small, large = _counts_for_small_and_large_registry(lambda: client.get(path))
    assert small == large == expected


def _requests(n: int, engineer, staging):
    """n promotion requests, each for its own model (one open request per model and environment)."""
    from registry.promotions.models import PromotionRequest

    now = timezone.now()
    for i in range(n):
        model = RegisteredModel.objects.create(name=f"p{i:03}-{n}", created_at=now, updated_at=now)
        version = ModelVersion.objects.create(model=model, version=1, source="models:/x/1", created_at=now,
                                              updated_at=now)
        PromotionRequest.objects.create(model=model, version=version, environment=staging, requested_by=engineer,
                                        justification="j", state=PromotionRequest.PENDING)


@pytest.mark.parametrize("path, expected", [
    ("/promotions/", 8),
    ("/promotions/inbox/", 9),
    ("/api/v1/promotions/", 4),
])
def test_promotion_lists_have_a_pinned_query_count(api, browser_client, approver, engineer, staging, path, expected):
    client = api(approver) if path.startswith("/api/") else browser_client(approver)
    client.get("/api/v1/me/") if path.startswith("/api/") else None
    _requests(2, engineer, staging)
    small = _count(lambda: client.get(path))
    _requests(20, engineer, staging)
    large = _count(lambda: client.get(path))
    assert small == large == expected
