"""/metrics: Modelgate's own request latency, queue depth and rollout outcomes for operators."""

import uuid
from datetime import timedelta

import pytest
from celery import Celery
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from console.accounts.services import token_create
from deployer import services
from deployer.models import Rollout

pytestmark = pytest.mark.django_db


def _scrape(client, user=None) -> tuple[int, dict]:
    headers = {}
    if user is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token_create(user=user, name='prometheus').raw}"
    response = client.get("/metrics", **headers)
    if response.status_code != 200:
        return response.status_code, {}
    families = {f.name: f for f in text_string_to_metric_families(response.content.decode())}
    return 200, families


def test_metrics_need_a_token_of_someone_who_may_view_deployments(client, nobody):
    assert client.get("/metrics").status_code == 401
    assert _scrape(client, nobody)[0] == 403


def test_metrics_count_console_requests_by_view(client, viewer):
    client.force_login(viewer)
    client.get("/deployments/")
    client.logout()
    status, families = _scrape(client, viewer)
    assert status == 200
    samples = families["modelgate_http_request_duration_seconds"].samples
    assert any(
        s.name.endswith("_count")
        and s.labels["view"] == "deployer:list"
        and s.labels["status"] == "200"
        and s.value >= 1
        for s in samples
    )


def test_metrics_report_rollouts_by_outcome_with_their_durations(client, viewer, iris, staging_local):
    deployment = services.deployment_get_or_create(target=staging_local, model=iris)
    now = timezone.now()
    for revision, (state, seconds) in enumerate([("live", 20), ("live", 40), ("rolled_back", 200)], start=1):
        Rollout.objects.create(
            deployment=deployment,
            revision=revision,
            version=iris.versions.get(version=1),
            state=state,
            started_at=now - timedelta(seconds=seconds),
            finished_at=now,
        )
    _, families = _scrape(client, viewer)
    totals = {
        (s.labels["kind"], s.labels["state"]): s.value
        for s in families["modelgate_rollouts"].samples
        if s.name == "modelgate_rollouts_total"
    }
    assert totals == {("deploy", "live"): 2, ("deploy", "rolled_back"): 1}
    buckets = {
        s.labels["le"]: s.value
        for s in families["modelgate_rollout_duration_seconds"].samples
        if s.name.endswith("_bucket") and s.labels["state"] == "live"
    }
    assert buckets["15"] == 0 and buckets["30"] == 1 and buckets["60"] == 2 and buckets["+Inf"] == 2


def test_metrics_show_messages_waiting_on_the_deploy_queue(client, viewer, settings):
    settings.DEPLOY_QUEUE = f"test-depth-{uuid.uuid4().hex[:8]}"
    sender = Celery(broker=settings.CELERY_BROKER_URL, set_as_current=False)
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        sender.conf.broker_transport_options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    try:
        for _ in range(3):
            sender.send_task("deployer.run_rollout", args=[0], queue=settings.DEPLOY_QUEUE)
        _, families = _scrape(client, viewer)
        depth = {s.labels["queue"]: s.value for s in families["modelgate_celery_queue_length"].samples}
        assert depth[settings.DEPLOY_QUEUE] == 3
    finally:  # nobody consumes this queue: leave no messages behind in a shared broker
        with sender.connection_for_write() as connection:
            connection.default_channel.queue_purge(settings.DEPLOY_QUEUE)
