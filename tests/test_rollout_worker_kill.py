"""A real worker killed with SIGKILL in the middle of a rollout: after a new worker starts,
the rollout ends live (or rolled back), is never left running, and never runs twice."""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from celery import Celery
from django.conf import settings

from console.audit.models import AuditEvent
from deployer.models import Rollout
from registry.promotions import services as promotions
from registry.promotions.models import PromotionRequest
from tests.celery_worker import _database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
LEASE = 4


class Workers:
    def __init__(self, tmp_path, mlflow_store, local_root):
        self.queue = f"test-{uuid.uuid4().hex[:8]}"
        self.var_dir = tmp_path / "var"
        self.env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "MLFLOW_TRACKING_URI": mlflow_store.uri,
            "MLFLOW_REGISTRY_URI": mlflow_store.uri,
            "MODELGATE_VAR_DIR": str(self.var_dir),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "DJANGO_SETTINGS_MODULE": "console.settings",
            # Every task this worker queues (resume, rollouts) stays on this test's queues.
            "DEPLOY_QUEUE": self.queue,
            "CELERY_DEFAULT_QUEUE": self.queue + "-default",
            "DEPLOYER_LEASE_SECONDS": str(LEASE),
            "DEPLOYER_LOCAL_ROOT": str(local_root),
        }
        self.processes = []
        self.log = tmp_path / "workers.log"

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:]) if self.log.exists() else ""

    def start(self) -> subprocess.Popen:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "console",
                "worker",
                "--pool=solo",
                "-l",
                "INFO",
                "-Q",
                f"{self.queue},{self.queue}-default",
                "-n",
                f"w{len(self.processes)}-{self.queue}@%h",
            ],
            env=self.env,
            cwd=settings.BASE_DIR,
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
        )
        self.processes.append(worker)
        return worker

    def send(self, name: str, args: list) -> None:
        sender = Celery(broker=settings.CELERY_BROKER_URL, set_as_current=False)
        if settings.CELERY_BROKER_URL.startswith("filesystem://"):
            folder = str(self.var_dir / "celery" / "broker")
            os.makedirs(folder, exist_ok=True)
            sender.conf.broker_transport_options = {
                "data_folder_in": folder,
                "data_folder_out": folder,
                "control_folder": str(self.var_dir / "celery" / "control"),
            }
        sender.send_task(name, args=args, queue=self.queue)

    def stop(self) -> None:
        for worker in self.processes:
            if worker.poll() is None:
                worker.terminate()
                try:
                    worker.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    worker.kill()


def _wait_for(predicate, timeout: float, what: str, workers: "Workers"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen in {timeout:.0f} s; the workers said:\n{workers.log_tail()}")


def test_a_rollout_whose_worker_is_killed_ends_live_after_a_restart(
    tmp_path, mlflow_store, local_root, engineer, approver, iris, staging_local, sent_tasks
):
    req = promotions.promotion_request(
        actor=engineer,
        version=iris.versions.get(version=1),
        environment=staging_local.environment,
        justification="ship",
    )
    promotions.promotion_approve(actor=approver, request_id=req.pk, comment="ok")
    assert sent_tasks == [("deployer.deploy_promotion", [req.pk])]
    workers = Workers(tmp_path, mlflow_store, local_root)
    try:
        first = workers.start()
        workers.send("deployer.deploy_promotion", [req.pk])

        def in_the_middle():
            rollout = Rollout.objects.filter(request=req).first()
            return rollout and any(s["name"] == "wait" and s["state"] == "running" for s in rollout.steps)

        _wait_for(in_the_middle, 120, "the rollout reaching its wait step", workers)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        rollout = Rollout.objects.get(request=req)
        assert rollout.state == Rollout.RUNNING  # the killed worker could not finish anything

        workers.start()  # a restart: its start-up hook resumes rollouts whose lease ran out
        _wait_for(
            lambda: Rollout.objects.get(pk=rollout.pk).state not in Rollout.ACTIVE,
            180,
            "the resumed rollout finishing",
            workers,
        )
    finally:
        workers.stop()

    rollout.refresh_from_db()
    req.refresh_from_db()
    assert rollout.state == Rollout.LIVE, rollout.reason
    assert req.state == PromotionRequest.LIVE
    assert rollout.attempts == 2
    assert Rollout.objects.filter(deployment=rollout.deployment).count() == 1
    verbs = list(
        AuditEvent.objects.filter(object_type="deployer.rollout", object_id=str(rollout.pk))
        .order_by("id")
        .values_list("verb", flat=True)
    )
    assert verbs == ["rollout.created", "rollout.started", "rollout.resumed", "rollout.live"]
    assert AuditEvent.objects.filter(verb="promotion.live", object_id=str(req.pk)).count() == 1
    assert str(mlflow_store.client().get_model_version_by_alias("iris", "staging").version) == "1"
