"""Fault injection: a stoppable, pausable TCP proxy (tests/faultproxy.py) sits between a
real Modelgate server (gunicorn, as `make run` serves it) and PostgreSQL, Redis or MLflow.
What each outage does is what docs/operations.md "Outages" states; the figures there come
from these tests' timings.

Each case names the dependency it needs: PostgreSQL cases run in CI's first run (DATABASE_URL
set), the broker case wherever a Redis answers on 127.0.0.1:6379."""

import os
import socket
import time

import pytest
from django.db import OperationalError, connection

from console.accounts.services import token_create
from deployer.models import Rollout
from deployer.tasks import resume_rollouts
from registry.promotions import services
from registry.promotions.models import PromotionRequest
from tests.faultproxy import FaultProxy
from tests.live_console import console_server, http
from tests.test_mlflow_server import mlflow_server  # noqa: F401 - a real `mlflow server`

MEASURED = "measured"  # user_properties key: tests/conftest.py prints these and writes measured.json

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="cuts PostgreSQL; CI's first run (DATABASE_URL set) runs this"
)
REDIS = ("127.0.0.1", 6379)
# This suite's own Redis database, flushed after use (TEST_REDIS_DB: another, on a shared machine).
REDIS_DB = int(os.environ.get("TEST_REDIS_DB", 8))


def _redis_up() -> bool:
    try:
        socket.create_connection(REDIS, timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def pg_proxy():
    d = connection.settings_dict
    proxy = FaultProxy(d["HOST"] or "127.0.0.1", d["PORT"] or 5432).start()
    yield proxy
    proxy.stop()


@pytest.fixture(autouse=True)
def one_warm_worker(settings):
    """One gunicorn worker, so the request before the fault warms the one that answers after
    it (a cold worker spends seconds importing, which is not what these tests time)."""
    settings.WEB_WORKERS = 1


@pytest.fixture
def measure(record_property):
    """measure(name, seconds): a figure for docs/operations.md "Outages", reported in the
    terminal summary and in <basetemp>/measured.json (record_property reaches xdist's controller)."""

    def record(name: str, seconds: float) -> None:
        record_property(MEASURED, {name: round(seconds, 3)})

    return record


def _until_ok(
    url: str, headers: dict, *, status: int = 200, method: str = "GET", data=None, within: float = 30
) -> float:
    """Seconds until ``url`` answers ``status`` (polled every 0.1 s), from now."""
    started = time.monotonic()
    while True:
        answer = http(url, headers=headers, method=method, data=data, timeout=10)
        if answer.status == status:
            return time.monotonic() - started
        assert time.monotonic() - started < within, (answer.status, answer.body[:300])
        time.sleep(0.1)


def _bearer(user) -> dict:
    return {"Authorization": f"Bearer {token_create(user=user, name='faults').raw}"}


@postgres_only
def test_reads_during_a_database_outage_answer_503_quickly_and_recover(tmp_path, pg_proxy, viewer, measure):
    headers = _bearer(viewer)
    with console_server(tmp_path, DATABASE_URL=_through(pg_proxy)) as base:
        assert http(base + "/api/v1/models/", headers=headers).status == 200
        pg_proxy.stop()  # PostgreSQL refuses
        api = http(base + "/api/v1/models/", headers=headers)
        page = http(base + "/models/", headers={"Cookie": "sessionid=nosuchsession0001"})
        health = http(base + "/healthz", headers={"Cookie": "sessionid=nosuchsession0001"})
        ready = http(base + "/readyz")
        assert (api.status, api.headers["Retry-After"], api.json()["dependency"]) == (503, "5", "database")
        assert page.status == 503 and b"briefly unavailable" in page.body
        assert health.status == 200 and ready.status == 503 and ready.json()["checks"]["database"]["ok"] is False
        assert max(api.seconds, page.seconds, health.seconds) < 3
        for name, answer in (("api", api), ("page", page), ("healthz", health), ("readyz", ready)):
            measure(f"database refused: {name} answer", answer.seconds)
        pg_proxy.start()  # back
        measure("database refused: back to 200 after it returns", _until_ok(base + "/api/v1/models/", headers))


@postgres_only
def test_reads_during_a_silent_database_answer_503_within_the_connect_timeout(tmp_path, pg_proxy, viewer, measure):
    headers = _bearer(viewer)
    # A new connection per request: a silent database is noticed by the connect timeout.
    with console_server(
        tmp_path, DATABASE_URL=_through(pg_proxy), DATABASE_CONN_MAX_AGE="0", DATABASE_CONNECT_TIMEOUT="2"
    ) as base:
        assert http(base + "/api/v1/models/", headers=headers).status == 200
        pg_proxy.pause()  # PostgreSQL accepts and says nothing
        api = http(base + "/api/v1/models/", headers=headers)
        assert api.status == 503 and api.headers["Retry-After"] == "5"
        assert api.seconds < 2 + 2  # the connect timeout, and a little
        health = http(base + "/healthz")
        assert health.status == 200
        measure("database silent (connect timeout 2 s): api answer", api.seconds)
        measure("database silent: healthz answer", health.seconds)
        pg_proxy.resume()
        measure("database silent: back to 200 after it answers again", _until_ok(base + "/api/v1/models/", headers))


@pytest.mark.skipif(not _redis_up(), reason="needs a Redis on 127.0.0.1:6379")
def test_an_approval_during_a_broker_outage_answers_200_and_is_deployed_after_recovery(
    tmp_path, engineer, approver, iris, staging_local, sent_tasks, settings, django_capture_on_commit_callbacks, measure
):
    import redis

    proxy = FaultProxy(*REDIS).start()
    req = services.promotion_request(
        actor=engineer, version=iris.versions.get(version=2), environment=staging_local.environment, justification="j"
    )
    try:
        with console_server(
            tmp_path,
            CELERY_BROKER_URL=f"redis://{proxy.address}/{REDIS_DB}",
            MLFLOW_TRACKING_URI=settings.MLFLOW_TRACKING_URI,
        ) as base:
            assert http(f"{base}/api/v1/promotions/{req.pk}/", headers=_bearer(approver)).status == 200  # warm
            proxy.stop()  # Redis refuses
            approved = http(
                f"{base}/api/v1/promotions/{req.pk}/approve/",
                method="POST",
                data={"comment": "go"},
                headers=_bearer(approver),
            )
            assert approved.status == 200, approved.body
            assert approved.json()["state"] == PromotionRequest.APPROVED
            assert approved.seconds < 5
            measure("broker refused: approval answer (200)", approved.seconds)
            proxy.start()  # Redis is back; the sweep (beat, every 15 s) finds what the outage lost
        settings.DEPLOYER_HANDOVER_GRACE_SECONDS = 0
        time.sleep(0.01)
        with django_capture_on_commit_callbacks(execute=True):
            queued = resume_rollouts()
        rollout = Rollout.objects.get(request=req)
        assert queued == [rollout.pk] and sent_tasks == [("deployer.run_rollout", [rollout.pk])]
        assert PromotionRequest.objects.get(pk=req.pk).state == PromotionRequest.DEPLOYING
    finally:
        proxy.stop()
        redis.Redis(*REDIS, db=REDIS_DB).flushdb()


@pytest.mark.skipif(not _redis_up(), reason="needs a Redis on 127.0.0.1:6379")
def test_an_approval_made_during_a_broker_outage_goes_live_once_a_worker_reaches_redis_again(
    tmp_path, engineer, approver, iris, staging_local, local_root, mlflow_store, sent_tasks, settings, measure
):
    """End to end, with a real worker: the figure docs/operations.md gives for "approved during
    the outage -> live". The worker starts once Redis is back (as one restarted by its
    supervisor would); its start-up sweep finds the approval (grace period 0 here)."""
    import redis

    from tests.test_rollout_worker_kill import Workers, _wait_for

    proxy = FaultProxy(*REDIS).start()
    broker = f"redis://{proxy.address}/{REDIS_DB}"
    req = services.promotion_request(
        actor=engineer, version=iris.versions.get(version=1), environment=staging_local.environment, justification="j"
    )
    workers = None
    try:
        with console_server(
            tmp_path,
            CELERY_BROKER_URL=broker,
            MLFLOW_TRACKING_URI=mlflow_store.uri,
            MLFLOW_REGISTRY_URI=mlflow_store.uri,
        ) as base:
            assert http(f"{base}/api/v1/promotions/{req.pk}/", headers=_bearer(approver)).status == 200  # warm
            proxy.stop()
            approved = http(
                f"{base}/api/v1/promotions/{req.pk}/approve/", method="POST", data={}, headers=_bearer(approver)
            )
            assert (approved.status, approved.json()["state"]) == (200, PromotionRequest.APPROVED)
        proxy.start()
        back = time.monotonic()
        settings.CELERY_BROKER_URL = broker
        workers = Workers(tmp_path, mlflow_store, local_root)
        workers.env["DEPLOYER_HANDOVER_GRACE_SECONDS"] = "0"
        workers.start()
        _wait_for(lambda: Rollout.objects.filter(request=req).exists(), 120, "the hand-over", workers)
        measure("broker back: rollout created by a (re)started worker's sweep", time.monotonic() - back)
        _wait_for(
            lambda: (
                PromotionRequest.objects.get(pk=req.pk).state
                not in (PromotionRequest.APPROVED, PromotionRequest.DEPLOYING)
            ),
            240,
            "the rollout finishing",
            workers,
        )
        measure("broker back: approval live (worker start, hand-over, rollout)", time.monotonic() - back)
        assert PromotionRequest.objects.get(pk=req.pk).state == PromotionRequest.LIVE
        assert Rollout.objects.filter(request=req).count() == 1
    finally:
        if workers is not None:
            workers.stop()
        proxy.stop()
        redis.Redis(*REDIS, db=REDIS_DB).flushdb()


def _through(proxy) -> str:
    from tests.live_console import database_url

    return database_url(host="127.0.0.1", port=proxy.port)


def test_a_registration_whose_database_was_cut_after_mlflow_wrote_leaves_them_equal_and_the_key_works_later(
    api, engineer, mlflow_store, settings
):
    from datetime import timedelta

    from django.utils import timezone

    from registry.models import IdempotencyKey, ModelVersion

    settings.IDEMPOTENCY_PENDING_SECONDS = 60
    client = api(engineer)
    assert client.post("/api/v1/models/", {"name": "churn"}, format="json").status_code == 201
    body = {"source": mlflow_store.template.models[0].model_uri}
    cut = []

    def database(execute, sql, params, many, context):
        # The connection drops once the version is in MLflow and its mirror row is being written.
        if cut or "registry_modelversion" in sql:
            cut.append(sql)
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    client.raise_request_exception = False
    with connection.execute_wrapper(database):
        first = client.post("/api/v1/models/churn/versions/", body, format="json", HTTP_IDEMPOTENCY_KEY="run-9")
    assert first.status_code == 503 and first.json()["dependency"] == "database"
    versions = mlflow_store.client().search_model_versions("name='churn'")
    assert versions == [] and not ModelVersion.objects.exists()  # MLflow's write was undone: both empty
    assert IdempotencyKey.objects.filter(key="run-9", response_status__isnull=True).exists()  # could not free it

    assert (
        client.post("/api/v1/models/churn/versions/", body, format="json", HTTP_IDEMPOTENCY_KEY="run-9").status_code
        == 409
    )
    IdempotencyKey.objects.filter(key="run-9").update(created_at=timezone.now() - timedelta(seconds=61))
    retry = client.post("/api/v1/models/churn/versions/", body, format="json", HTTP_IDEMPOTENCY_KEY="run-9")
    assert retry.status_code == 201, retry.json()
    in_mlflow = [int(v.version) for v in mlflow_store.client().search_model_versions("name='churn'")]
    assert len(in_mlflow) == 1  # one version, never two (MLflow does not reuse the undone number)
    assert list(ModelVersion.objects.values_list("version", flat=True)) == in_mlflow == [retry.json()["version"]]


def test_mlflow_down_refuses_writes_with_503_and_reads_from_the_mirror_keep_working(
    api, engineer, mlflow_server, settings, monkeypatch, measure
):  # noqa: F811 - the imported fixture
    import mlflow

    port = int(mlflow_server.rsplit(":", 1)[1])
    proxy = FaultProxy("127.0.0.1", port).start()
    settings.MLFLOW_TRACKING_URI = settings.MLFLOW_REGISTRY_URI = f"http://{proxy.address}"
    mlflow.set_tracking_uri(settings.MLFLOW_TRACKING_URI)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    client = api(engineer)
    try:
        assert client.post("/api/v1/models/", {"name": "churn"}, format="json").status_code == 201
        for fault in (proxy.stop, proxy.pause):  # MLflow refuses, then MLflow is silent
            fault()
            started = time.monotonic()
            write = client.post("/api/v1/models/", {"name": "churn-2"}, format="json")
            assert write.status_code == 503 and write["Retry-After"] == "10", write.json()
            elapsed = time.monotonic() - started
            assert elapsed < 5
            measure(
                f"MLflow {fault.__name__.replace('stop', 'refused').replace('pause', 'silent')} "
                "(timeout 2 s, no retries): write answer (503)",
                elapsed,
            )
            assert client.get("/api/v1/models/churn/").status_code == 200  # the mirror answers
            assert client.get("/api/v1/models/").json()["results"][0]["name"] == "churn"
            proxy.stop()  # drop what a silent MLflow held, so nothing arrives late
            proxy.resume()
            proxy.start()
        started = time.monotonic()
        assert client.post("/api/v1/models/", {"name": "churn-2"}, format="json").status_code == 201
        measure("MLflow back: first write (201)", time.monotonic() - started)
    finally:
        proxy.stop()
