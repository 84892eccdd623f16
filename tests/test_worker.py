"""A real Celery worker process consumes the configured broker and runs the sync.

On the embedded default the broker is kombu's filesystem transport (no server);
in CI's PostgreSQL run it is the machine's Redis.
"""

import os
import subprocess
import sys
import time
import uuid

import pytest
from celery import Celery
from django.conf import settings
from django.db import connection

from registry.models import RegisteredModel, SyncState

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


def test_a_worker_process_runs_the_sync_task_from_the_broker(tmp_path, mlflow_store):
    mlflow_store.client().create_registered_model("made-in-mlflow")
    queue = f"test-{uuid.uuid4().hex[:8]}"
    var_dir = tmp_path / "var"
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "MLFLOW_TRACKING_URI": mlflow_store.uri,
        "MLFLOW_REGISTRY_URI": mlflow_store.uri,
        "MODELGATE_VAR_DIR": str(var_dir),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "DJANGO_SETTINGS_MODULE": "console.settings",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "console", "worker", "--pool=solo", "-Q", queue, "-l", "INFO"],
        env=env,
        cwd=settings.BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        sender = Celery(broker=settings.CELERY_BROKER_URL, set_as_current=False)
        if settings.CELERY_BROKER_URL.startswith("filesystem://"):
            folder = str(var_dir / "celery" / "broker")
            os.makedirs(folder, exist_ok=True)
            sender.conf.broker_transport_options = {
                "data_folder_in": folder,
                "data_folder_out": folder,
                "control_folder": str(var_dir / "celery" / "control"),
            }
        sender.send_task("registry.sync_registry", queue=queue)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not RegisteredModel.objects.filter(name="made-in-mlflow").exists():
            assert worker.poll() is None, worker.stdout.read()
            time.sleep(0.5)
        assert RegisteredModel.objects.filter(name="made-in-mlflow").exists(), "worker did not sync in 90 s"
        assert SyncState.objects.get(pk=1).ok
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
