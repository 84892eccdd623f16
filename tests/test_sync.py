"""Changes made with a plain MLflow client reach Modelgate through one sync."""

import pytest
from django.core.management import call_command

from console.audit.models import AuditEvent
from registry import selectors
from registry.models import ModelVersion, RegisteredModel
from registry.sync import registry_sync
from tests import factories

pytestmark = pytest.mark.django_db


def test_a_model_and_version_created_in_mlflow_appear_after_one_sync(mlflow_store):
    client = mlflow_store.client()
    logged = mlflow_store.template.models[0]
    client.create_registered_model("outside", tags={"team": "x"}, description="made with MLflow")
    client.create_model_version("outside", logged.model_uri, run_id=logged.run_id)
    client.set_registered_model_alias("outside", "champion", "1")

    report = registry_sync()

    model = RegisteredModel.objects.get(name="outside")
    assert (model.description, model.tags, model.aliases) == ("made with MLflow", {"team": "x"}, {"champion": 1})
    assert (model.latest_version, model.version_count) == (1, 1)
    version = ModelVersion.objects.get(model=model)
    assert version.aliases == ["champion"] and version.servable and version.signature
    assert report.created == 1 and report.versions_created == 1
    assert AuditEvent.objects.filter(verb="model.discovered", actor_name="mlflow-sync").count() == 1
    assert selectors.sync_state().ok


def test_changes_and_deletions_in_mlflow_are_mirrored_with_audit_events(engineer, mlflow_store):
    model = factories.model(actor=engineer, name="iris", tags={"team": "a"})
    for logged in mlflow_store.template.models:
        factories.version(actor=engineer, model=model, logged=logged)
    client = mlflow_store.client()
    client.set_registered_model_tag("iris", "team", "b")
    client.set_model_version_tag("iris", "2", "validated", "yes")
    client.set_registered_model_alias("iris", "production", "2")
    client.delete_model_version("iris", "1")

    registry_sync()

    model.refresh_from_db()
    assert model.tags == {"team": "b"}
    assert model.aliases == {"production": 2}
    assert list(model.versions.values_list("version", flat=True)) == [2]
    assert (model.latest_version, model.version_count) == (2, 1)
    assert model.versions.get().tags["validated"] == "yes"
    verbs = set(AuditEvent.objects.filter(actor_name="mlflow-sync").values_list("verb", flat=True))
    assert {"model.changed", "version.changed", "version.removed"} <= verbs


def test_a_model_deleted_in_mlflow_disappears(engineer, mlflow_store):
    factories.model(actor=engineer, name="gone")
    mlflow_store.client().delete_registered_model("gone")
    registry_sync()
    assert not RegisteredModel.objects.filter(name="gone").exists()
    assert AuditEvent.objects.filter(verb="model.removed", object_repr="gone").exists()


def test_sync_repairs_a_lost_mirror_row(engineer, mlflow_store):
    model = factories.model(actor=engineer, name="iris")
    factories.version(actor=engineer, model=model, logged=mlflow_store.template.models[0])
    ModelVersion.objects.all().delete()
    registry_sync()
    assert model.versions.count() == 1


def test_a_second_sync_changes_nothing(engineer, mlflow_store):
    model = factories.model(actor=engineer, name="iris")
    factories.version(actor=engineer, model=model, logged=mlflow_store.template.models[0])
    registry_sync()
    events = AuditEvent.objects.count()
    report = registry_sync()
    assert report.as_dict() == dict.fromkeys(report.as_dict(), 0)
    assert AuditEvent.objects.count() == events


def test_management_command_reports_counts(mlflow_store, capsys):
    mlflow_store.client().create_registered_model("cli-made")
    call_command("registry_sync")
    assert "Registry synced" in capsys.readouterr().out
    assert RegisteredModel.objects.filter(name="cli-made").exists()


def test_sync_failure_is_recorded_for_the_ui(settings):
    from registry import gateway

    settings.MLFLOW_TRACKING_URI = settings.MLFLOW_REGISTRY_URI = "http://127.0.0.1:9"
    with pytest.raises(gateway.MlflowUnavailable):
        registry_sync()
    state = selectors.sync_state()
    assert not state.ok and "MLflow could not be read" in state.message
