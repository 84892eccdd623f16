"""Odd input anywhere gets a 4xx that names the problem, never a 500."""

import pytest

from console.audit.models import AuditEvent
from registry import gateway
from registry.models import ModelVersion, RegisteredModel
from registry.sync import sync_model
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("mlflow_store")]


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("get", "/api/v1/models/?cursor=garbage", None),
        ("get", "/api/v1/models/x/versions/99999999999999999999/", None),
        ("get", "/api/v1/versions/?status=WHATEVER", None),
        ("post", "/api/v1/models/", {"name": {"nested": 1}}),
        ("post", "/api/v1/models/", {"name": "ok", "tags": {"k": {"v": 1}}}),
        ("post", "/api/v1/models/", ["a", "list"]),
        ("patch", "/api/v1/models/nope/", {"description": "x"}),
        (
            "post",
            "/api/v1/promotions/",
            {"model": "x", "version": 99999999999999999999, "environment": "e", "justification": "j"},
        ),
        ("post", "/api/v1/promotions/", {"model": "x", "version": "one", "environment": "e", "justification": ""}),
        ("post", "/api/v1/promotions/424242/approve/", {}),
        ("get", "/api/v1/environments/none/history/?at=not-a-time", None),
        ("get", "/api/v1/audit/?until=31/12/2026", None),
    ],
)
def test_odd_api_input_is_a_4xx(api, admin_user, method, path, body):
    response = getattr(api(admin_user), method)(path, body, format="json")
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    assert response.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/models/?page=abc",
        "/models/?page=99999",
        "/models/nope/",
        "/models/nope/versions/1/",
        "/audit/?since=yesterday&page=-1",
        "/promotions/?state=bogus&page=x",
        "/promotions/9999/",
        "/environments/nope/",
        "/environments/nope/?model=x&at=garbage",
    ],
)
def test_odd_page_input_is_never_a_500(browser_client, admin_user, path):
    assert browser_client(admin_user).get(path).status_code < 500


# --- issue 11, point 7: bad input gives a 4xx and changes nothing ---------------------------


def test_a_body_over_the_limit_is_a_413_naming_the_limit(api, engineer, settings):
    settings.MAX_REQUEST_BODY_BYTES = 64 * 1024
    client = api(engineer)
    body = '{"name": "big", "description": "' + "x" * (100 * 1024) + '"}'
    response = client.generic("POST", "/api/v1/models/", body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["limit"] == 64 * 1024 and "MAX_REQUEST_BODY_BYTES" in response.json()["detail"]
    assert not RegisteredModel.objects.exists()


def test_a_chunked_body_without_a_length_is_cut_off_at_the_limit(settings):
    """Under ASGI a chunked body carries no Content-Length and Django would read all of it; the
    limit reads one byte past it and answers 413 (the request never reaches a view)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from django.core.handlers.asgi import ASGIHandler

    settings.MAX_REQUEST_BODY_BYTES = 4096
    chunks = [{"type": "http.request", "body": b"x" * 1000, "more_body": True} for _ in range(10)]
    chunks.append({"type": "http.request", "body": b"", "more_body": False})
    sent = []

    async def receive():
        if chunks:
            return chunks.pop(0)
        await asyncio.sleep(60)  # the client waits for the answer (Django cancels this once it is sent)
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/models/",
        "raw_path": b"/api/v1/models/",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"localhost"), (b"content-type", b"application/json")],
        "server": ("localhost", 80),
        "client": ("127.0.0.1", 5000),
    }
    # In a thread of its own: an earlier test in this worker (Playwright's sync API) may have
    # left an event loop set on this thread, and asyncio.run() refuses to start inside one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, ASGIHandler()(scope, receive, send)).result()
    assert sent[0]["status"] == 413
    assert b"4096" in b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.parametrize(
    "body, says",
    [
        ("[" * 100_000 + "]" * 100_000, "nested deeper than 32"),
        ('{"name": "x", "tags": {"a": NaN}}', "NaN"),
        ('{"name": "x", "tags": {"a": Infinity}}', "Infinity"),
        ('{"name": "x", "tags": {"a": 1e999}}', "out of range"),
    ],
)
def test_json_too_deep_or_not_finite_is_a_400(api, engineer, body, says):
    response = api(engineer).generic("POST", "/api/v1/models/", body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert says in response.json()["detail"]
    assert not RegisteredModel.objects.exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999", "NaN"])
def test_a_threshold_that_is_not_a_finite_number_is_a_form_error(browser_client, admin_user, production, value):
    page = browser_client(admin_user).post(
        "/environments/production/edit/",
        {
            "name": "production",
            "position": 2,
            "alias": "production",
            "required_approvals": 1,
            "request_ttl_hours": 72,
            "thresholds": f"accuracy >= {value}",
        },
    )
    assert page.status_code == 400
    assert "finite number" in page.context["form"].errors["thresholds"][0]
    production.refresh_from_db()
    assert production.metric_thresholds == [{"metric": "accuracy", "op": ">=", "value": 0.92}]


def test_a_threshold_that_is_not_finite_is_refused_by_the_service(admin_user, production):
    from console.errors import ServiceError
    from registry.promotions import services as promotions

    with pytest.raises(ServiceError) as refused:
        promotions.environment_save(
            actor=admin_user,
            environment=production,
            metric_thresholds=[{"metric": "accuracy", "op": ">=", "value": float("nan")}],
        )
    assert refused.value.field == "thresholds"


def test_a_version_can_be_registered_from_an_alias(api, engineer, mlflow_store):
    model = factories.model(actor=engineer, name="churn")
    factories.version(actor=engineer, model=model, logged=mlflow_store.template.models[0])
    gateway.set_alias("churn", "champion", 1)
    response = api(engineer).post("/api/v1/models/churn/versions/", {"source": "models:/churn@champion"}, format="json")
    assert response.status_code == 201, response.content
    # The alias moves; the version it named when registering is what was registered.
    assert response.json()["source"] == "models:/churn/1"
    assert response.json()["version"] == 2


def test_an_alias_that_does_not_exist_is_a_400(api, engineer):
    factories.model(actor=engineer, name="churn")
    response = api(engineer).post("/api/v1/models/churn/versions/", {"source": "models:/churn@nobody"}, format="json")
    assert response.status_code == 400 and "source" in response.json()["fields"]


@pytest.mark.parametrize("name", ["o'brien", 'say "hi"', "both'\"quotes", "back\\slash"])
def test_the_sync_mirrors_a_model_whose_name_holds_quotes(engineer, mlflow_store, name):
    client = mlflow_store.client()
    client.create_registered_model(name)
    client.create_registered_model(name + "-other")
    client.create_model_version(name, mlflow_store.template.models[0].model_uri)
    client.create_model_version(name + "-other", mlflow_store.template.models[0].model_uri)
    sync_model(name)
    assert list(ModelVersion.objects.filter(model__name=name).values_list("version", flat=True)) == [1]
    assert not RegisteredModel.objects.filter(name=name + "-other").exists()


def test_too_many_tags_in_one_request_are_refused(api, engineer, mlflow_store):
    tags = {f"k{i}": "v" for i in range(101)}
    response = api(engineer).post("/api/v1/models/", {"name": "tagged", "tags": tags}, format="json")
    assert response.status_code == 400 and "At most 100 tags" in response.json()["fields"]["tags"][0]
    assert not RegisteredModel.objects.exists() and not mlflow_store.client().search_registered_models()


def test_tags_that_would_pile_up_past_the_limit_are_refused_before_mlflow(api, engineer, mlflow_store):
    factories.model(actor=engineer, name="tagged", tags={f"a{i}": "v" for i in range(60)})
    response = api(engineer).patch("/api/v1/models/tagged/", {"tags": {f"b{i}": "v" for i in range(60)}}, format="json")
    assert response.status_code == 400 and "would leave 120" in response.json()["detail"]
    assert len(mlflow_store.client().get_registered_model("tagged").tags) == 60


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "iris\n"}, "name"),
        ({"name": "iris", "tags": {"team\n": "x"}}, "tags"),
    ],
)
def test_names_and_tag_keys_ending_in_a_newline_are_refused(api, engineer, body, field):
    response = api(engineer).post("/api/v1/models/", body, format="json")
    assert response.status_code == 400 and field in response.json()["fields"]
    assert not RegisteredModel.objects.exists()


def test_a_run_id_ending_in_a_newline_is_refused(api, engineer, mlflow_store):
    logged = mlflow_store.template.models[0]
    factories.model(actor=engineer, name="iris")
    response = api(engineer).post(
        "/api/v1/models/iris/versions/", {"source": logged.model_uri, "run_id": logged.run_id + "\n"}, format="json"
    )
    assert response.status_code == 400 and "run_id" in response.json()["fields"]
    assert not ModelVersion.objects.exists()


def test_a_run_source_naming_a_missing_artifact_path_is_refused(api, engineer, mlflow_store):
    logged = mlflow_store.template.models[0]
    factories.model(actor=engineer, name="iris")
    events = AuditEvent.objects.count()
    response = api(engineer).post(
        "/api/v1/models/iris/versions/", {"source": f"runs:/{logged.run_id}/does-not-exist"}, format="json"
    )
    assert response.status_code == 400, response.content
    assert "does-not-exist" in response.json()["fields"]["source"][0]
    assert not ModelVersion.objects.exists() and not mlflow_store.client().search_model_versions("name = 'iris'")
    assert AuditEvent.objects.count() == events + 1  # only the token the API client was given
