import pytest

from console.audit.models import AuditEvent
from console.audit.services import audit_record
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("mlflow_store")]


def test_audit_events_carry_the_request_id(api, engineer):
    response = api(engineer).post("/api/v1/models/", {"name": "traced"}, format="json", HTTP_X_REQUEST_ID="req-123")
    assert response["X-Request-ID"] == "req-123"
    assert AuditEvent.objects.get(verb="model.created").request_id == "req-123"


def test_events_are_append_only(engineer):
    factories.model(actor=engineer, name="iris")
    event = AuditEvent.objects.get()
    with pytest.raises(TypeError):
        event.save()
    with pytest.raises(TypeError):
        event.delete()
    with pytest.raises(TypeError):
        AuditEvent.objects.all().delete()
    with pytest.raises(TypeError):
        AuditEvent.objects.update(verb="x")


def test_audit_record_refuses_to_run_outside_a_transaction(engineer, django_db_blocker):
    from django.db import transaction

    # The test wraps everything in atomic(); step outside it with a fresh autocommit check.
    assert transaction.get_connection().in_atomic_block
    conn = transaction.get_connection()
    conn.in_atomic_block = False
    try:
        with pytest.raises(RuntimeError, match="inside transaction.atomic"):
            audit_record(actor=engineer, verb="x", object_type="t", object_id="1", object_repr="r")
    finally:
        conn.in_atomic_block = True


def test_api_filters_by_actor_verb_object_and_time(api, engineer, admin_user, mlflow_store):
    model = factories.model(actor=engineer, name="iris")
    factories.version(actor=engineer, model=model, logged=mlflow_store.template.models[0])
    factories.model(actor=admin_user, name="other")
    client = api(admin_user)

    def verbs(**params):
        return [e["verb"] for e in client.get("/api/v1/audit/", params).json()["results"]]

    assert verbs(actor=engineer.username) == ["version.registered", "model.created"]
    assert verbs(verb="model.created") == ["model.created", "model.created"]
    assert verbs(verb="version.") == ["version.registered"]
    assert verbs(object_type="registry.registeredmodel", object_id=str(model.pk)) == ["model.created"]
    assert verbs(since="2999-01-01T00:00:00Z") == []
    bad = client.get("/api/v1/audit/", {"since": "yesterday"})
    assert bad.status_code == 400 and "since" in bad.json()["fields"]


def test_audit_page_lists_and_filters(browser_client, engineer, admin_user):
    factories.model(actor=engineer, name="iris")
    factories.model(actor=admin_user, name="other")
    client = browser_client(admin_user)
    page = client.get("/audit/", {"actor": engineer.username}).content.decode()
    assert "iris" in page and "other" not in page
    partial = client.get("/audit/", {"actor": admin_user.username}, HTTP_HX_REQUEST="true").content.decode()
    assert "other" in partial and "<html" not in partial
