"""MLflow first, then the mirror: a failure on either side leaves nothing half-written."""

import pytest
from django.db import DatabaseError

from registry import services
from registry.models import ModelVersion, RegisteredModel
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def test_mlflow_down_means_a_503_and_no_row(api, engineer, settings):
    settings.MLFLOW_TRACKING_URI = settings.MLFLOW_REGISTRY_URI = "http://127.0.0.1:9"
    response = api(engineer).post("/api/v1/models/", {"name": "offline"}, format="json")
    assert response.status_code == 503
    assert "Retry" in response.json()["detail"]
    assert not RegisteredModel.objects.exists()


def test_database_failure_after_mlflow_write_undoes_the_mlflow_version(engineer, mlflow_store, monkeypatch):
    model = factories.model(actor=engineer, name="iris")

    def broken_audit(**kwargs):
        raise DatabaseError("disk full")

    monkeypatch.setattr(services, "audit_record", broken_audit)
    with pytest.raises(DatabaseError):
        factories.version(actor=engineer, model=model, logged=mlflow_store.template.models[0])
    assert not ModelVersion.objects.exists()
    assert mlflow_store.client().search_model_versions("name='iris'") == []


def test_database_failure_after_mlflow_model_write_undoes_the_model(engineer, mlflow_store, monkeypatch):
    monkeypatch.setattr(services, "audit_record", lambda **kw: (_ for _ in ()).throw(DatabaseError("x")))
    with pytest.raises(DatabaseError):
        factories.model(actor=engineer, name="iris")
    assert not RegisteredModel.objects.exists()
    assert mlflow_store.client().search_registered_models() == []
