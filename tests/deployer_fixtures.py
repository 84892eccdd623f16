"""Deployer fixtures: a broker stand-in that records deployer tasks, local targets whose
model servers are stopped after each test, and the steps to run what was queued."""

import json
import os
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from console.celery import app
from deployer.models import DeploymentTarget


class SentTasks(list):
    """The deployer tasks the code under test queued, in order: (name, args)."""

    def run_all(self):
        """What a worker would do with the queue: run each task, including those queued
        by the tasks themselves. Returns the tasks' results."""
        results = []
        while self:
            name, args = self.pop(0)
            import deployer.tasks  # noqa: F401 - registers the tasks, as a worker does at start

            results.append(app.tasks[name](*args))
        return results


@pytest.fixture(autouse=True)
def sent_tasks(monkeypatch) -> SentTasks:
    """Deployer tasks are recorded instead of reaching the broker, so a test decides when a
    "worker" runs them; other tasks go on as before. Tests with real workers use their own
    Celery client and queue (tests/test_worker.py, tests/test_rollout_worker_kill.py)."""
    sent = SentTasks()
    real = app.send_task

    def send_task(name, args=None, kwargs=None, **options):
        if name.startswith("deployer."):
            sent.append((name, list(args or [])))
            return None
        return real(name, args=args, kwargs=kwargs, **options)

    monkeypatch.setattr(app, "send_task", send_task)
    return sent


def _stop_model_servers(root: Path) -> None:
    """Every process a local deployment started: routers, stable and canary model servers."""
    for pid_file in root.glob("**/*.pid"):
        try:
            os.killpg(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        except (OSError, ValueError):
            pass


@pytest.fixture
def local_root(settings, tmp_path):
    root = tmp_path / "deployments"
    settings.DEPLOYER_LOCAL_ROOT = root
    yield root
    _stop_model_servers(root)


@pytest.fixture
def staging_local(staging, local_root):
    return DeploymentTarget.objects.create(
        environment=staging, backend=DeploymentTarget.LOCAL, rollout_timeout_seconds=120
    )


@pytest.fixture
def production_local(production, local_root):
    return DeploymentTarget.objects.create(
        environment=production, backend=DeploymentTarget.LOCAL, rollout_timeout_seconds=120
    )


def predict_sender(port: int, model: str = "iris", label: str = "staging"):
    """send(body) -> HTTP status of a predict by label on a local model server: what
    deployer.loadgen.run calls, as a client of the deployment would."""

    def send(body):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/models/{model}/labels/{label}:predict",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    return send
