"""A real Celery worker process consumes the configured broker and runs the sync.

On the embedded default the broker is kombu's filesystem transport (no server);
in CI's PostgreSQL run it is the machine's Redis.
"""

import pytest

from registry import selectors
from registry.models import RegisteredModel
from tests.celery_worker import worker_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_worker_process_runs_the_sync_task_from_the_broker(tmp_path, mlflow_store):
    mlflow_store.client().create_registered_model("made-in-mlflow")
    with worker_process(tmp_path, mlflow_store) as worker:
        worker.send("registry.sync_registry")
        worker.wait_for(lambda: RegisteredModel.objects.filter(name="made-in-mlflow").exists(), "sync")
        assert selectors.sync_state().ok
