import pytest

from registry.models import ModelVersion, RegisteredModel
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def iris(engineer, mlflow_store):
    model = factories.model(actor=engineer, name="iris", description="Flowers", tags={"team": "demo"})
    for logged in mlflow_store.template.models:
        factories.version(actor=engineer, model=model, logged=logged)
    return model


def test_models_list_searches_and_returns_a_partial_for_htmx(browser_client, viewer, iris, engineer):
    factories.model(actor=engineer, name="ranker")
    client = browser_client(viewer)
    full = client.get("/models/").content.decode()
    assert "iris" in full and "ranker" in full and "<html" in full
    partial = client.get("/models/", {"q": "ran"}, HTTP_HX_REQUEST="true")
    assert partial["Vary"].find("HX-Request") >= 0
    html = partial.content.decode()
    assert "ranker" in html and "iris" not in html and "<html" not in html


def test_empty_registry_says_what_to_do(browser_client, viewer):
    html = browser_client(viewer).get("/models/").content.decode()
    assert "No models yet" in html


def test_model_page_lists_versions_and_tags(browser_client, viewer, iris):
    html = browser_client(viewer).get("/models/iris/").content.decode()
    assert "Flowers" in html and "team" in html
    assert "/models/iris/versions/2/" in html and "/models/iris/versions/1/" in html


def test_version_page_shows_signature_source_and_serving(browser_client, viewer, iris, mlflow_store):
    html = browser_client(viewer).get("/models/iris/versions/2/").content.decode()
    assert "features" in html and "float32" in html and "probabilities" in html
    assert mlflow_store.template.models[1].model_uri in html
    assert "tf2model" in html


def test_run_panel_shows_metrics_and_params(browser_client, viewer, iris):
    html = browser_client(viewer).get("/models/iris/versions/2/run/", HTTP_HX_REQUEST="true").content.decode()
    assert "accuracy" in html and "0.9500" in html and "seed" in html


def test_unknown_pages_are_404_with_a_way_back(browser_client, viewer, iris):
    response = browser_client(viewer).get("/models/iris/versions/99/")
    assert response.status_code == 404
    assert "no version 99" in response.content.decode()


def test_model_created_in_the_ui_is_in_mlflow(browser_client, engineer, mlflow_store):
    response = browser_client(engineer).post(
        "/models/new/", {"name": "ui-made", "description": "d", "tags": "team=ui\nowner=ana"}
    )
    assert response.status_code == 302
    assert mlflow_store.client().get_registered_model("ui-made").tags == {"team": "ui", "owner": "ana"}


def test_bad_name_in_the_ui_shows_the_reason_and_keeps_the_input(browser_client, engineer):
    response = browser_client(engineer).post("/models/new/", {"name": "bad name!", "description": "keep me"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "letters, digits" in html and "keep me" in html
    assert not RegisteredModel.objects.exists()


def test_register_version_in_the_ui(browser_client, engineer, iris, mlflow_store):
    client = browser_client(engineer)
    refused = client.post("/models/iris/versions/new/", {"source": "/etc/passwd"})
    assert refused.status_code == 400 and "outside the allowed roots" in refused.content.decode()
    logged = mlflow_store.template.models[0]
    response = client.post("/models/iris/versions/new/", {"source": f"runs:/{logged.run_id}/model"})
    assert response.status_code == 302 and response["Location"] == "/models/iris/versions/3/"
    assert ModelVersion.objects.filter(model=iris, version=3, run_id=logged.run_id).exists()


def test_edit_tags_in_the_ui_removes_and_adds(browser_client, engineer, iris, mlflow_store):
    response = browser_client(engineer).post("/models/iris/edit/", {"description": "New", "tags": "owner=ana"})
    assert response.status_code == 302
    rm = mlflow_store.client().get_registered_model("iris")
    assert rm.tags == {"owner": "ana"} and rm.description == "New"


def test_login_page_and_logout(client, viewer):
    assert client.get("/login/").status_code == 200
    response = client.post("/login/", {"username": viewer.username, "password": "pw-" + viewer.username})
    assert response.status_code == 302
    assert client.get("/models/").status_code == 200
    client.post("/logout/")
    assert client.get("/models/").status_code == 302


def test_openapi_schema_and_docs_are_served_without_a_cdn(browser_client, viewer):
    client = browser_client(viewer)
    schema = client.get("/api/v1/schema/")
    assert schema.status_code == 200 and b"/api/v1/models/{name}/versions/" in schema.content
    docs = client.get("/api/v1/docs/").content.decode()
    assert "swagger" in docs.lower() and "cdn" not in docs.lower() and "https://" not in docs
