"""The smaller faults of issue 13: gate inputs that cannot be read, the sync during a
rollout, export scratch left by a killed worker, and the processes of `make run`, which die with it."""

import os
import subprocess
import sys
import time

import pytest

from console.audit.models import AuditEvent
from deployer.export import scratch_clean
from registry.promotions import services
from registry.promotions.models import PromotionRequest
from registry.sync import registry_sync

pytestmark = pytest.mark.django_db


def test_a_promotion_whose_gate_inputs_cannot_be_read_answers_503_and_writes_nothing(
    api, engineer, iris, staging, production, settings, monkeypatch
):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    settings.MLFLOW_TRACKING_URI = settings.MLFLOW_REGISTRY_URI = "http://127.0.0.1:9"  # MLflow is down
    response = api(engineer).post(
        "/api/v1/promotions/",
        {"model": "iris", "version": 2, "environment": "production", "justification": "j"},
        format="json",
    )
    assert response.status_code == 503, response.json()
    assert response["Retry-After"] == "10"
    assert "metrics" in response.json()["detail"]
    assert not PromotionRequest.objects.exists()
    # An environment without metric gates needs nothing from MLflow: still requested.
    ok = api(engineer).post(
        "/api/v1/promotions/",
        {"model": "iris", "version": 2, "environment": "staging", "justification": "j"},
        format="json",
    )
    assert ok.status_code == 201


def test_the_sync_reports_no_drift_while_a_rollout_moves_the_alias(engineer, approver, iris, staging, mlflow_store):
    req = services.promotion_request(
        actor=engineer, version=iris.versions.get(version=2), environment=staging, justification="j"
    )
    services.promotion_approve(actor=approver, request_id=req.pk)
    assert services.promotion_start_deploying(request_id=req.pk)
    # The rollout's last step moves MLflow's alias first; the sync runs before it records the span.
    mlflow_store.client().set_registered_model_alias("iris", "staging", "2")
    registry_sync()
    iris.refresh_from_db()
    assert not AuditEvent.objects.filter(verb="alias.drift").exists()
    assert "staging" not in iris.aliases  # the mirror follows when the request is live, not before
    services.promotion_mark_live(request_id=req.pk)
    registry_sync()
    iris.refresh_from_db()
    assert iris.aliases == {"staging": 2}
    assert not AuditEvent.objects.filter(verb="alias.drift").exists()
    # Once nothing is moving it, an alias moved in MLflow is drift again.
    mlflow_store.client().set_registered_model_alias("iris", "staging", "1")
    registry_sync()
    assert AuditEvent.objects.filter(verb="alias.drift").count() == 1


def test_export_scratch_of_a_killed_worker_is_removed_at_the_next_start(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    models = tmp_path / "iris-staging" / "models" / "iris"
    (models / "2").mkdir(parents=True)
    left = models / f".incoming-2-{dead.pid}-x1y2"
    (left / "download").mkdir(parents=True)
    running = models / f".incoming-3-{os.getpid()}-a1b2"  # an export still running
    running.mkdir()
    assert scratch_clean(tmp_path) == [left]
    assert not left.exists() and running.exists() and (models / "2").exists()


def test_children_of_make_run_die_with_it(tmp_path):
    """`make run` killed with SIGKILL takes its worker and beat with it (PR_SET_PDEATHSIG)."""
    script = (
        "import sys, time; from console.supervise import Pair; "
        "p = Pair(['sleep', '300'], ['sleep', '300']); p.start(); "
        "print(p.worker.pid, p.beat.pid, flush=True); time.sleep(300)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()}
    )
    pids = [int(p) for p in parent.stdout.readline().split()]
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_running(p) for p in pids):
        time.sleep(0.1)
    assert not any(_running(p) for p in pids)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie has exited; only its parent's wait is missing
        return fh.read().split()[2] != "Z"
