"""Outages answer 503 with Retry-After, quickly: JSON for the API, a static page for
browsers; liveness depends on nothing; readiness names each dependency with its latency;
an outage is logged once, not as a traceback per request.

The database is cut at the edge with Django's own query hook (``execute_wrapper``): every
query fails the way psycopg2 fails on a refused connection."""

import contextlib
import logging
import os
import subprocess
import sys
import time

import pytest
from django.db import OperationalError, connection

from registry.models import RegisteredModel

pytestmark = pytest.mark.django_db


def _refused(execute, sql, params, many, context):
    raise OperationalError('connection to server at "127.0.0.1", port 5432 failed: Connection refused')


@contextlib.contextmanager
def database_down():
    with connection.execute_wrapper(_refused):
        yield


@pytest.fixture
def mlflow_down(settings, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    settings.MLFLOW_TRACKING_URI = settings.MLFLOW_REGISTRY_URI = "http://127.0.0.1:9"  # nothing listens


def test_api_reads_during_a_database_outage_answer_json_503_and_log_once(api, viewer, caplog, mlflow_store):
    client = api(viewer)
    caplog.set_level(logging.INFO)
    with database_down():
        answers = [client.get("/api/v1/models/") for _ in range(5)]
    assert {a.status_code for a in answers} == {503}
    assert answers[0]["Retry-After"] == "5"
    assert answers[0].json()["error"] == "unavailable" and answers[0].json()["dependency"] == "database"
    outage_lines = [r for r in caplog.records if r.name == "modelgate.outages"]
    assert len(outage_lines) == 1 and "database is unreachable" in outage_lines[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info], "no traceback per request"
    # Back: the next successful check says so once.
    assert client.get("/readyz").status_code == 200
    assert [r.getMessage() for r in caplog.records if r.name == "modelgate.outages"][-1].startswith(
        "The database is reachable again"
    )


def test_a_page_during_a_database_outage_is_the_static_503_page(browser_client, viewer):
    client = browser_client(viewer)  # a session cookie: loading it is already a query
    client.raise_request_exception = False  # as a real server: the answer, not the exception
    with database_down():
        response = client.get("/models/")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    body = response.content.decode()
    assert "Modelgate is briefly unavailable" in body
    assert "<script" not in body and "<style" not in body and "style=" not in body
    assert '<link rel="stylesheet" href="/static/css/errors.css">' in body


def test_an_error_in_a_view_during_an_outage_is_a_503_too(browser_client, viewer, iris):
    client = browser_client(viewer)
    client.raise_request_exception = False
    client.get("/models/")

    def fail_on_versions(execute, sql, params, many, context):
        if "registry_modelversion" in sql:
            return _refused(execute, sql, params, many, context)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(fail_on_versions):
        response = client.get("/models/iris/")
    assert response.status_code == 503
    assert "briefly unavailable" in response.content.decode()


def test_healthz_depends_on_nothing_even_with_a_session_cookie(browser_client, viewer):
    client = browser_client(viewer)
    with database_down():
        started = time.monotonic()
        response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert time.monotonic() - started < 1


def test_readyz_reports_each_dependency_with_its_latency(client, mlflow_store):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    checks = response.json()["checks"]
    assert set(checks) == {"database", "broker", "mlflow"}
    assert all(c["ok"] and c["latency_ms"] >= 0 for c in checks.values())


def test_readyz_answers_503_naming_mlflow_when_it_is_down(client, mlflow_down):
    started = time.monotonic()
    response = client.get("/readyz")
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    assert response["Retry-After"] == "10"
    checks = response.json()["checks"]
    assert checks["mlflow"]["ok"] is False and checks["mlflow"]["error"]
    assert checks["database"]["ok"] is True and checks["broker"]["ok"] is True


def test_mlflow_down_refuses_writes_with_503_and_reads_from_the_mirror_still_work(api, engineer, iris, mlflow_down):
    client = api(engineer)
    write = client.post("/api/v1/models/", {"name": "churn"}, format="json")
    assert write.status_code == 503 and write["Retry-After"] == "10"
    assert write.json()["error"] == "upstream_unavailable"
    assert not RegisteredModel.objects.filter(name="churn").exists()
    assert client.get("/api/v1/models/iris/").status_code == 200
    assert client.get("/api/v1/models/iris/versions/2/").status_code == 200
    run = client.get("/api/v1/models/iris/versions/2/run/")
    assert run.status_code == 503 and run["Retry-After"] == "10"


def _settings_in_a_fresh_process(**env) -> str:
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({'db': s.DATABASES['default'].get('OPTIONS', {}), "
        "'broker': getattr(s, 'CELERY_BROKER_TRANSPORT_OPTIONS', {}), "
        "'timeout': s.CELERY_BROKER_CONNECTION_TIMEOUT}))"
    )
    import json

    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "console.settings", **env},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_postgresql_and_redis_get_connect_statement_and_socket_timeouts():
    seen = _settings_in_a_fresh_process(
        DATABASE_URL="postgres://u@db.invalid:5432/x",
        DATABASE_STATEMENT_TIMEOUT="7",
        CELERY_BROKER_URL="redis://redis.invalid:6379/0",
        REDIS_SOCKET_TIMEOUT="4",
    )
    assert seen["db"]["connect_timeout"] == 3
    assert seen["db"]["options"] == "-c statement_timeout=7000"
    assert seen["broker"]["socket_timeout"] == 4 and seen["broker"]["socket_connect_timeout"] == 3
    assert seen["timeout"] == 3


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's own statement_timeout")
def test_the_database_enforces_the_statement_timeout():
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "30s"
