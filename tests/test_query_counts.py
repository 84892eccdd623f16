"""List pages and list endpoints cost the same number of queries for 2 rows or 20 (1 or 5 deployments)."""

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from registry.models import ModelVersion, RegisteredModel
from tests.test_deployer_pages import served  # noqa: F401 - a fixture

pytestmark = pytest.mark.django_db

# Every API request reads the failed-token count for its address and counts itself against
# its token's rate (console/accounts/throttling.py). In the embedded default the cache is a
# database table: one SELECT, and a savepoint, COUNT, SELECT and write for the set. With
# CACHE_URL (Redis) these are not database queries at all.
# A token's user and permissions come from the token cache after its first use
# (console/accounts/token_cache.py); what is read per request is its generation number, one
# more SELECT on the cache table.
THROTTLE = 8 if settings.CACHES["default"]["BACKEND"].endswith("DatabaseCache") else 0


def _mirror(models: int, versions: int):
    """Mirror rows written directly: the counts are about reading, not registering."""
    now = timezone.now()
    for m in range(models):
        model = RegisteredModel.objects.create(
            name=f"m{m:03}",
            created_at=now,
            updated_at=now,
            tags={"team": "t"},
            aliases={"production": 1},
            latest_version=versions,
            version_count=versions,
        )
        ModelVersion.objects.bulk_create(
            ModelVersion(
                model=model,
                version=v + 1,
                source=f"models:/m{m:03}/{v + 1}",
                created_at=now,
                updated_at=now,
                aliases=["production"] if v == 0 else [],
                tags={"k": "v"},
            )
            for v in range(versions)
        )


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


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/models/", 8),
        ("/models/m000/", 8),
    ],
)
def test_list_pages_have_a_pinned_query_count(browser_client, viewer, path, expected):
    client = browser_client(viewer)
    small, large = _counts_for_small_and_large_registry(lambda: client.get(path))
    assert small == large == expected


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/api/v1/models/", 1 + THROTTLE),
        ("/api/v1/models/m000/versions/", 2 + THROTTLE),
        ("/api/v1/versions/", 1 + THROTTLE),
    ],
)
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
        version = ModelVersion.objects.create(
            model=model, version=1, source="models:/x/1", created_at=now, updated_at=now
        )
        PromotionRequest.objects.create(
            model=model,
            version=version,
            environment=staging,
            requested_by=engineer,
            justification="j",
            state=PromotionRequest.PENDING,
        )


# The approver's pages include the navigation's count of requests waiting for them: one
# query (registry.promotions.selectors.inbox_count), whatever the number of requests. The
# inbox reads the user's groups in subqueries now, two queries fewer.
@pytest.mark.parametrize(
    "path, expected",
    [
        ("/promotions/", 8 + 1),
        ("/promotions/inbox/", 9 + 1 - 2),
        ("/api/v1/promotions/", 1 + THROTTLE),
    ],
)
def test_promotion_lists_have_a_pinned_query_count(api, browser_client, approver, engineer, staging, path, expected):
    client = api(approver) if path.startswith("/api/") else browser_client(approver)
    client.get("/api/v1/me/") if path.startswith("/api/") else None
    _requests(2, engineer, staging)
    small = _count(lambda: client.get(path))
    _requests(20, engineer, staging)
    large = _count(lambda: client.get(path))
    assert small == large == expected


def _deployments(n: int, staging, engineer, approver):
    """n more deployments in staging, one per new model, each serving a revision whose
    promotion request has an approving review."""
    from deployer.models import Deployment, DeploymentTarget

    target, _ = DeploymentTarget.objects.get_or_create(environment=staging)
    now = timezone.now()
    start = Deployment.objects.count()
    for i in range(start, start + n):
        model = RegisteredModel.objects.create(name=f"d{i:03}", created_at=now, updated_at=now)
        version = ModelVersion.objects.create(
            model=model, version=1, source="models:/x/1", created_at=now, updated_at=now
        )
        deployment = Deployment.objects.create(target=target, model=model, name=f"d{i:03}-staging")
        _revisions(deployment, version, 1, engineer, approver)
        # Traffic for the dashboard's columns and sparkline.
        from datetime import timedelta

        from django.utils import timezone as tz

        from deployer.metrics.points import align
        from deployer.models import MetricPoint

        for back in (15, 65, 125):
            MetricPoint.objects.create(
                deployment=deployment,
                resolution=10,
                requests=50,
                errors=1,
                at=align(tz.now(), 10) - timedelta(seconds=back),
                latency_buckets={"10000": 50},
                replicas_desired=1,
                replicas_ready=1,
            )


def _revisions(deployment, version, n: int, engineer, approver):
    """n more live revisions of ``deployment``, each from an approved promotion request."""
    from deployer.models import Deployment, Rollout
    from registry.promotions.models import PromotionRequest, Review

    now = timezone.now()
    first = deployment.rollouts.count() + 1
    for revision in range(first, first + n):
        req = PromotionRequest.objects.create(
            model=deployment.model,
            version=version,
            environment=deployment.target.environment,
            requested_by=engineer,
            justification="j",
            state=PromotionRequest.LIVE,
        )
        Review.objects.create(request=req, reviewer=approver, decision=Review.APPROVE)
        rollout = Rollout.objects.create(
            deployment=deployment,
            revision=revision,
            version=version,
            request=req,
            state=Rollout.LIVE,
            started_at=now,
            finished_at=now,
        )
        Deployment.objects.filter(pk=deployment.pk).update(live_rollout=rollout, state=Deployment.SERVING)


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/deployments/", 10),  # two of them read the metrics summary, whatever the number of rows
        ("/api/v1/deployments/", 1 + THROTTLE),
    ],
)
def test_deployment_lists_have_a_pinned_query_count(
    api, browser_client, viewer, engineer, approver, staging, path, expected
):
    client = api(viewer) if path.startswith("/api/") else browser_client(viewer)
    client.get("/api/v1/me/") if path.startswith("/api/") else None
    _deployments(1, staging, engineer, approver)
    small = _count(lambda: client.get(path))
    _deployments(4, staging, engineer, approver)
    large = _count(lambda: client.get(path))
    assert small == large == expected


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/deployments/{pk}/", 9),  # + the requests waiting for a decision there
        ("/api/v1/deployments/{pk}/rollouts/", 3 + THROTTLE),
    ],
)
def test_deployment_history_has_a_pinned_query_count(
    api, browser_client, viewer, engineer, approver, staging, path, expected
):
    from deployer.models import Deployment

    client = api(viewer) if path.startswith("/api/") else browser_client(viewer)
    client.get("/api/v1/me/") if path.startswith("/api/") else None
    _deployments(1, staging, engineer, approver)
    deployment = Deployment.objects.get()
    version = deployment.live_rollout.version
    path = path.format(pk=deployment.pk)
    small = _count(lambda: client.get(path))
    _revisions(deployment, version, 4, engineer, approver)
    large = _count(lambda: client.get(path))
    assert small == large == expected


def _discussion(req, n: int, engineer, approver):
    """n more comments on ``req``, each by a new user, and one review by another."""
    from django.contrib.auth import get_user_model

    from registry.promotions.models import Comment, Review

    User = get_user_model()
    start = req.comments.count()
    for i in range(start, start + n):
        author = User.objects.create(username=f"c{i:03}")
        Comment.objects.create(request=req, author=author, body=f"comment {i}")
    reviewer = User.objects.create(username=f"r{start:03}")
    Review.objects.create(request=req, reviewer=reviewer, decision=Review.REJECT, comment="no")


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/promotions/{pk}/", 12 + 1),  # + the navigation's count for the approver
        # The request, then its reviews and its comments, each with its author joined.
        ("/api/v1/promotions/{pk}/", 3 + THROTTLE),
    ],
)
def test_a_promotion_request_with_its_discussion_has_a_pinned_query_count(
    api, browser_client, approver, engineer, staging, path, expected
):
    from registry.promotions.models import PromotionRequest

    client = api(approver) if path.startswith("/api/") else browser_client(approver)
    client.get("/api/v1/me/") if path.startswith("/api/") else None
    _requests(1, engineer, staging)
    req = PromotionRequest.objects.get()
    path = path.format(pk=req.pk)
    _discussion(req, 1, engineer, approver)
    small = _count(lambda: client.get(path))
    _discussion(req, 10, engineer, approver)
    large = _count(lambda: client.get(path))
    assert small == large == expected


# A canary's rollout page: the session, the user, its two permission sets, the rollout with
# its deployment, environment, version and request in one join, then who may decide
# (deployer.selectors.canary_denials: the approver group and the user's membership), the
# user's roles for the header and, for the approver, the count of requests waiting for them. The
# panel's poll (every second) is the same but the count; the charts' data is the rollout and
# one read of points per track. None of it grows with the verdicts or the steps.
@pytest.mark.parametrize(
    "path, htmx, expected",
    [
        ("/rollouts/{pk}/", False, 8 + 1),
        ("/rollouts/{pk}/?part=canary", True, 8),
        ("/rollouts/{pk}/traffic/", False, 7),
    ],
)
def test_a_canary_rollout_page_has_a_pinned_query_count(
    browser_client, approver, engineer, served, path, htmx, expected
):
    from deployer.models import Rollout
    from tests.test_canary_api import VERDICT, held_canary

    rollout = held_canary(served, engineer, approver)
    client = browser_client(approver)
    path = path.format(pk=rollout.pk)
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    small = _count(lambda: client.get(path, **headers))
    waiting = {"reason": "12 requests", "numbers": VERDICT["numbers"], "at": VERDICT["at"]}
    Rollout.objects.filter(pk=rollout.pk).update(
        canary={**rollout.canary, "step": 1, "weight": 50, "verdicts": [VERDICT], "waiting": waiting}
    )
    large = _count(lambda: client.get(path, **headers))
    assert small == large == expected
