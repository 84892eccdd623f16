import pytest

from registry.models import ModelVersion

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("mlflow_store")]


@pytest.fixture
def churn(api, engineer):
    assert api(engineer).post("/api/v1/models/", {"name": "churn"}, format="json").status_code == 201
    return "/api/v1/models/churn/versions/"


def test_register_from_a_logged_model_uri_is_visible_in_mlflow(api, engineer, churn, mlflow_store):
    logged = mlflow_store.template.models[0]
    response = api(engineer).post(
        churn, {"source": logged.model_uri, "run_id": logged.run_id, "tags": {"stage": "candidate"}}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["version"] == 1
    assert body["servable"] is True
    assert body["flavors"] == ["python_function", "tensorflow"]
    assert body["signature"]["inputs"] == [{"name": "features", "dtype": "float32", "shape": [-1, 4]}]
    assert body["creator"] == engineer.username
    mv = mlflow_store.client().get_model_version("churn", "1")
    assert mv.source == logged.model_uri
    assert mv.run_id == logged.run_id
    assert mv.tags["stage"] == "candidate"


def test_register_from_a_runs_uri_takes_the_run_from_the_uri(api, engineer, churn, mlflow_store):
    logged = mlflow_store.template.models[1]
    response = api(engineer).post(churn, {"source": f"runs:/{logged.run_id}/model"}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["run_id"] == logged.run_id
    assert response.json()["servable"] is True


def test_signature_falls_back_to_the_savedmodel(api, engineer, churn, mlflow_store):
    logged = mlflow_store.template.unsigned
    body = api(engineer).post(churn, {"source": logged.model_uri}, format="json").json()
    assert body["signature"]["origin"] == "SavedModel"
    assert body["signature"]["inputs"][0]["name"] == "features"


def test_version_run_shows_training_metrics_and_params(api, engineer, churn, mlflow_store):
    logged = mlflow_store.template.models[1]
    api(engineer).post(churn, {"source": logged.model_uri, "run_id": logged.run_id}, format="json")
    run = api(engineer).get(churn + "1/run/").json()
    assert run["metrics"] == {"accuracy": 0.95}
    assert run["params"]["seed"] == "2"


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({"source": "/etc/passwd"}, "source", "outside the allowed roots"),
        ({"source": "file:///tmp/../etc/passwd"}, "source", "'..'"),
        ({"source": "http://attacker/x"}, "source", "not allowed"),
        ({"source": "models:/m-0123456789abcdef0123456789abcdef"}, "source", "does not exist in MLflow"),
        ({"source": "models:/churn/9"}, "source", "does not exist in MLflow"),
        ({"source": "runs:/0123456789abcdef0123456789abcdef/model"}, "source", "does not exist in MLflow"),
        ({"source": "models:/churn/1", "run_id": "nothex"}, "run_id", "32-character"),
        ({}, "source", "required"),
    ],
)
def test_bad_sources_are_refused_with_the_reason_and_nothing_is_registered(
    api, engineer, churn, mlflow_store, body, field, words
):
    response = api(engineer).post(churn, body, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["fields"]
    assert words in response.json()["detail"]
    assert not ModelVersion.objects.exists()
    assert mlflow_store.client().search_model_versions("name='churn'") == []


def test_registering_into_an_unknown_model_is_a_404(api, engineer, mlflow_store):
    logged = mlflow_store.template.models[0]
    response = api(engineer).post("/api/v1/models/ghost/versions/", {"source": logged.model_uri}, format="json")
    assert response.status_code == 404
    assert "'ghost' does not exist" in response.json()["detail"]


def test_a_model_made_directly_in_mlflow_can_take_versions_before_any_sync(api, engineer, mlflow_store):
    mlflow_store.client().create_registered_model("made-elsewhere")
    logged = mlflow_store.template.models[0]
    response = api(engineer).post(
        "/api/v1/models/made-elsewhere/versions/", {"source": logged.model_uri}, format="json"
    )
    assert response.status_code == 201, response.json()


def test_idempotency_key_returns_the_first_result_and_never_a_second_version(api, engineer, churn, mlflow_store):
    client = api(engineer)
    body = {"source": mlflow_store.template.models[0].model_uri}
    first = client.post(churn, body, format="json", HTTP_IDEMPOTENCY_KEY="build-42")
    again = client.post(churn, body, format="json", HTTP_IDEMPOTENCY_KEY="build-42")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert len(mlflow_store.client().search_model_versions("name='churn'")) == 1
    other = client.post(
        churn, {"source": mlflow_store.template.models[1].model_uri}, format="json", HTTP_IDEMPOTENCY_KEY="build-42"
    )
    assert other.status_code == 400
    assert "Idempotency-Key" in other.json()["fields"]


def test_a_failed_request_frees_its_idempotency_key(api, engineer, churn, mlflow_store):
    client = api(engineer)
    assert client.post(churn, {"source": "/etc/passwd"}, format="json", HTTP_IDEMPOTENCY_KEY="k1").status_code == 400
    # Same key, same (bad) body: still refused for the same reason, not replayed or stuck.
    assert client.post(churn, {"source": "/etc/passwd"}, format="json", HTTP_IDEMPOTENCY_KEY="k1").status_code == 400


def test_a_key_whose_first_request_died_is_released_after_the_pending_time(
    api, engineer, churn, mlflow_store, settings
):
    from datetime import timedelta

    from django.utils import timezone

    from registry.idempotency import idempotency_claim
    from registry.models import IdempotencyKey

    settings.IDEMPOTENCY_PENDING_SECONDS = 60
    body = {"source": mlflow_store.template.models[0].model_uri}
    # The first request claimed the key, then its process was killed: the marker is all it left.
    idempotency_claim(user=engineer, key="build-7", scope="register:churn", body=body)
    client = api(engineer)
    stuck = client.post(churn, body, format="json", HTTP_IDEMPOTENCY_KEY="build-7")
    assert stuck.status_code == 409
    assert "released after 60 s" in stuck.json()["detail"]

    IdempotencyKey.objects.filter(key="build-7").update(created_at=timezone.now() - timedelta(seconds=61))
    retry = client.post(churn, body, format="json", HTTP_IDEMPOTENCY_KEY="build-7")
    assert retry.status_code == 201, retry.json()
    replay = client.post(churn, body, format="json", HTTP_IDEMPOTENCY_KEY="build-7")
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"
    assert replay.json() == retry.json()
    assert len(mlflow_store.client().search_model_versions("name='churn'")) == 1


def test_version_list_detail_and_search(api, engineer, churn, mlflow_store):
    client = api(engineer)
    for logged in mlflow_store.template.models:
        client.post(churn, {"source": logged.model_uri, "run_id": logged.run_id}, format="json")
    listed = client.get(churn).json()["results"]
    assert [v["version"] for v in listed] == [2, 1]
    detail = client.get(churn + "2/").json()
    assert detail["model_uri"] == "models:/churn/2"
    found = client.get("/api/v1/versions/", {"run_id": mlflow_store.template.models[0].run_id}).json()["results"]
    assert [(v["model"], v["version"]) for v in found] == [("churn", 1)]
    missing = client.get(churn + "7/")
    assert missing.status_code == 404 and "no version 7" in missing.json()["detail"]


def test_patch_version_description_and_tags(api, engineer, churn, mlflow_store):
    client = api(engineer)
    client.post(churn, {"source": mlflow_store.template.models[0].model_uri}, format="json")
    response = client.patch(churn + "1/", {"description": "baseline", "tags": {"dataset": "2026-11"}}, format="json")
    assert response.status_code == 200
    mv = mlflow_store.client().get_model_version("churn", "1")
    assert mv.description == "baseline" and mv.tags["dataset"] == "2026-11"


def test_the_training_run_is_found_from_the_source_when_not_given(api, engineer, churn, mlflow_store):
    logged = mlflow_store.template.models[1]
    first = api(engineer).post(churn, {"source": logged.model_uri}, format="json").json()
    assert first["run_id"] == logged.run_id
    second = api(engineer).post(churn, {"source": "models:/churn/1"}, format="json").json()
    assert second["run_id"] == logged.run_id


class _CountingClient:
    """An MlflowClient that records the name of every call made through it."""

    def __init__(self, real, calls):
        self._real, self._calls = real, calls

    def __getattr__(self, name):
        attribute = getattr(self._real, name)
        if not callable(attribute):
            return attribute

        def call(*args, **kwargs):
            self._calls.append(name)
            return attribute(*args, **kwargs)

        return call


@pytest.fixture
def mlflow_calls(monkeypatch):
    """Every MLflow call registration makes: client methods, artifact listings and downloads."""
    from registry import gateway

    calls: list[str] = []
    real_client, real_names, real_read = gateway.client, gateway._artifact_names, gateway._read_artifact
    monkeypatch.setattr(gateway, "client", lambda: _CountingClient(real_client(), calls))
    monkeypatch.setattr(gateway, "_artifact_names", lambda uri: calls.append("list_artifacts") or real_names(uri))
    monkeypatch.setattr(gateway, "_read_artifact", lambda uri: calls.append("download_artifact") or real_read(uri))
    return calls


def test_registering_from_a_runs_uri_makes_only_the_mlflow_calls_it_needs(
    api, engineer, churn, mlflow_store, mlflow_calls
):
    logged = mlflow_store.template.models[1]

    response = api(engineer).post(
        churn, {"source": f"runs:/{logged.run_id}/model", "tags": {"team": "risk", "stage": "candidate"}}, format="json"
    )

    assert response.status_code == 201, response.json()
    # The run once (it exists, and where its artifacts are); its artifact folder listed, then
    # the logged model MLflow 3 keeps the run's model as found and listed; MLmodel read and the
    # SavedModel folder listed by the inspection; one create that carries every tag. No run
    # read twice, no version read back, no tag written on its own.
    assert sorted(mlflow_calls) == sorted(
        [
            "get_run",
            "list_artifacts",
            "search_logged_models",
            "list_artifacts",
            "download_artifact",
            "list_artifacts",
            "create_model_version",
        ]
    ), mlflow_calls
    assert mlflow_store.client().get_model_version("churn", "1").tags["team"] == "risk"
