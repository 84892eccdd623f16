"""One rule for model names (registry.validation.model_name_problem): creating a model and
registering a version from a models:/<name>/<version> source refuse the same names, and each
answer names the field at fault. No MLflow is needed: both refuse before asking it."""

import pytest
from mlflow.utils.validation import _validate_model_name as mlflow_validate_model_name

from registry.models import RegisteredModel
from registry.sources import validate_source
from registry.validation import clean_model_name, model_name_problem

REFUSED = ["has space", "a:b", "a/b", "-dash-first", ".dot-first", "naïve", "x" * 129, "new", "sync"]
ACCEPTED = ["iris", "churn-2.v1", "A_b", "7up", "x" * 128]


@pytest.mark.django_db
@pytest.mark.parametrize("name", REFUSED)
def test_a_name_refused_for_a_model_is_refused_in_a_source_and_each_answer_names_its_field(api, engineer, name):
    rule = model_name_problem(name)
    assert rule is not None
    client = api(engineer)

    created = client.post("/api/v1/models/", {"name": name}, format="json")
    assert created.status_code == 400
    assert list(created.json()["fields"]) == ["name"]
    assert created.json()["detail"] == f"name: Name {rule}."

    registered = client.post("/api/v1/models/iris/versions/", {"source": f"models:/{name}/1"}, format="json")
    assert registered.status_code == 400
    assert list(registered.json()["fields"]) == ["source"]
    assert registered.json()["detail"] == f"source: The model name in a models: URI {rule}."
    assert not RegisteredModel.objects.exists()


@pytest.mark.parametrize("name", ACCEPTED)
def test_a_name_the_rule_allows_is_taken_by_both_paths_and_by_mlflow(name):
    assert model_name_problem(name) is None
    assert clean_model_name(name) == name
    assert validate_source(f"models:/{name}/3", allowed_roots=[]) == f"models:/{name}/3"
    assert validate_source(f"models:/{name}@champion", allowed_roots=[]) == f"models:/{name}@champion"
    mlflow_validate_model_name(name)  # Modelgate's rule is narrower than MLflow's, never wider
