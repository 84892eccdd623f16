"""Audit events a Celery task writes carry the id of the web request that queued it: the id
travels in the task message's headers to a real worker process (console/celery.py), and a
task queued outside any request (celery beat) carries none."""

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from console.audit.models import AuditEvent
from console.middleware import RequestIdMiddleware
from tests.celery_worker import worker_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _event_for(name: str):
    return AuditEvent.objects.filter(object_repr=name, verb="model.discovered").first()


def test_a_task_made_audit_event_carries_the_id_of_the_request_that_queued_the_task(tmp_path, mlflow_store):
    mlflow_store.client().create_registered_model("queued-by-a-click")
    with worker_process(tmp_path, mlflow_store) as worker:

        def view(request):  # what "Sync now" does: queue the sync and answer
            worker.send("registry.sync_registry")
            return HttpResponse(status=202)

        response = RequestIdMiddleware(view)(RequestFactory().post("/models/sync/", HTTP_X_REQUEST_ID="click-42"))
        assert response["X-Request-ID"] == "click-42"
        worker.wait_for(lambda: _event_for("queued-by-a-click"), "sync")
        event = _event_for("queued-by-a-click")
        assert (event.actor_name, event.request_id) == ("mlflow-sync", "click-42")

        # The same worker, then a task from beat: the earlier request's id is not left behind.
        mlflow_store.client().create_registered_model("found-by-beat")
        worker.send("registry.sync_registry")
        worker.wait_for(lambda: _event_for("found-by-beat"), "sync again")
        assert _event_for("found-by-beat").request_id == ""
