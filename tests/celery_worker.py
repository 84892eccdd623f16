"""A real Celery worker process on the configured broker, and a client that sends to it, for
the tests that need a task to cross a process boundary (tests/test_worker.py,
tests/test_task_request_id.py). The worker consumes only its own queue."""

import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

from celery import Celery
from django.conf import settings
from django.db import connection


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


@dataclass
class Worker:
    process: subprocess.Popen
    sender: Celery
    queue: str

    def send(self, name: str, **options):
        return self.sender.send_task(name, queue=self.queue, **options)

    def wait_for(self, condition, what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not condition():
            assert self.process.poll() is None, self.process.stdout.read()
            time.sleep(0.5)
        assert condition(), f"the worker did not {what} in {timeout:.0f} s"


@contextmanager
def worker_process(tmp_path, mlflow_store):
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
    process = subprocess.Popen(
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
        yield Worker(process=process, sender=sender, queue=queue)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
