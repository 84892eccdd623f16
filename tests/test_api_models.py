import pytest

from console.audit.models import AuditEvent
from registry.models import RegisteredModel

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("mlflow_store")]
URL = "/api/v1/models/"


def test_engineer_creates_a_model_that_mlflow_shows(api, engineer, mlflow_store):
    response = api(engineer).post(
        URL, {"name": "churn", "description": "Who leaves", "tags": {"team": "growth"}}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["name"] == "churn"
    in_mlflow = mlflow_store.client().get_registered_model("churn")
    assert in_mlflow.description == "Who leaves"
    assert in_mlflow.tags == {"team": "growth"}
    assert AuditEvent.objects.filter(verb="model.created", object_repr="churn", actor=engineer).count() == 1


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({"name": "x" * 129}, "name", "at most 128"),
        ({"name": "../etc"}, "name", "letters, digits"),
        ({"name": "has space"}, "name", "letters, digits"),
        ({"name": "new"}, "name", "reserved"),
        ({"name": ""}, "name", "blank"),
        ({}, "name", "required"),
        ({"name": "ok", "tags": ["not", "a", "dict"]}, "tags", "dictionary"),
        ({"name": "ok", "tags": {"modelgate.registered_by": "me"}}, "tags", "set by Modelgate"),
    ],
)
def test_bad_model_input_is_a_400_naming_the_field_and_leaves_nothing(api, engineer, mlflow_store, body, field, words):
    response = api(engineer).post(URL, body, format="json")
    assert response.status_code == 400
    payload = response.json()
    assert field in payload["fields"]
    assert words in payload["detail"]
    assert not RegisteredModel.objects.exists()
    assert mlflow_store.client().search_registered_models() == []


def test_malformed_json_is_a_400(api, engineer):
    response = api(engineer).post(URL, '{"name": "x",', content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


def test_duplicate_name_is_a_409(api, engineer):
    client = api(engineer)
    assert client.post(URL, {"name": "dup"}, format="json").status_code == 201
    response = client.post(URL, {"name": "dup"}, format="json")
    assert response.status_code == 409
    assert "already exists" in response.json()["detail"]


def test_unknown_model_is_a_404_that_names_it(api, viewer):
    response = api(viewer).get(URL + "nope/")
    assert response.status_code == 404
    assert "'nope' does not exist" in response.json()["detail"]


def test_list_searches_and_filters(api, engineer):
    client = api(engineer)
    for name, tags in (("fraud-detector", {"team": "risk"}), ("fraud-scorer", {"team": "ads"}), ("ranker", {})):
        assert client.post(URL, {"name": name, "tags": tags}, format="json").status_code == 201
    names = lambda r: [m["name"] for m in r.json()["results"]]  # noqa: E731
    assert names(client.get(URL, {"q": "fraud"})) == ["fraud-detector", "fraud-scorer"]
    assert names(client.get(URL, {"tag": "team:risk"})) == ["fraud-detector"]
    assert names(client.get(URL, {"tag": "team"})) == ["fraud-detector", "fraud-scorer"]
    page = client.get(URL, {"page_size": 2}).json()
    assert len(page["results"]) == 2 and page["next"]
    rest = client.get(page["next"]).json()
    assert [m["name"] for m in rest["results"]] == ["ranker"]


def test_bad_filter_value_names_the_parameter(api, viewer):
    response = api(viewer).get(URL, {"servable": "perhaps"})
    assert response.status_code == 400
    assert "servable" in response.json()["fields"]


def test_patch_changes_description_and_tags_in_mlflow(api, engineer, mlflow_store):
    client = api(engineer)
    client.post(URL, {"name": "churn", "tags": {"team": "growth", "old": "1"}}, format="json")
    response = client.patch(
        URL + "churn/", {"description": "v2 text", "tags": {"owner": "ana", "old": None}}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["tags"] == {"team": "growth", "owner": "ana"}
    in_mlflow = mlflow_store.client().get_registered_model("churn")
    assert in_mlflow.description == "v2 text"
    assert in_mlflow.tags == {"team": "growth", "owner": "ana"}
    event = AuditEvent.objects.get(verb="model.updated")
    assert event.before["tags"] == {"team": "growth", "old": "1"}
    assert event.after["description"] == "v2 text"


def test_unknown_api_path_is_json_404(api, viewer):
    response = api(viewer).get("/api/v1/models/x/versions/notanumber/")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
