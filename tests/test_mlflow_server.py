"""Against a real `mlflow server` (not only its store opened directly): registering a logged
model (models:/m-…) through Modelgate's API must work, as it does for CI pipelines."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def mlflow_server(mlflow_store, settings, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mlflow = Path(sys.executable).parent / "mlflow"
    log = open(tmp_path / "mlflow-server.log", "wb")
    server = subprocess.Popen(
        [
            str(mlflow),
            "server",
            "--backend-store-uri",
            # SQLite has one writer at a time: wait up to 60 s for the lock (pysqlite's
            # `timeout`, 5 s by default) rather than fail a write when many clients write at once.
            f"{mlflow_store.uri}?timeout=60",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--default-artifact-root",
            mlflow_store.artifacts.as_uri(),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except OSError:
            assert server.poll() is None, (tmp_path / "mlflow-server.log").read_text()[-3000:]
            time.sleep(0.5)
    settings.MLFLOW_TRACKING_URI = settings.MLFLOW_REGISTRY_URI = url
    import mlflow as mlflow_module

    mlflow_module.set_tracking_uri(url)
    yield url
    # `mlflow server` runs its web workers as children: stop the whole group, and kill it if
    # it does not go within the grace time (a loaded CI machine can be slow to shut down).
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
    log.close()


def test_a_logged_model_registers_through_the_api_against_an_mlflow_server(mlflow_server, api, engineer, mlflow_store):
    logged = mlflow_store.template.models[0]
    client = api(engineer)
    assert client.post("/api/v1/models/", {"name": "churn"}, format="json").status_code == 201
    response = client.post(
        "/api/v1/models/churn/versions/", {"source": logged.model_uri, "run_id": logged.run_id}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["version"] == 1
