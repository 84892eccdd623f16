"""Drift, redeploy and undeploy on the local backend, with a real model-server process."""

import os
import signal

import pytest

from console.audit.models import AuditEvent
from deployer import services
from deployer.drift_check import drift_check
from deployer.models import Deployment, Rollout
from registry.promotions.models import PromotionRequest
from tests.test_rollout_local import _predict, approve, promote

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_stopped_model_server_shows_as_drift_and_a_redeploy_then_an_undeploy_work(
    browser_client, engineer, approver, iris, staging_local, sent_tasks, mlflow_store, local_root
):
    promote(browser_client, engineer, approver, iris.versions.get(version=1), staging_local.environment, sent_tasks)
    deployment = Deployment.objects.get(model=iris)
    assert drift_check(deployment.pk).drift_state == Deployment.IN_SYNC

    pid = int((local_root / deployment.name / "server.pid").read_text().split()[0])
    os.killpg(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    deployment = drift_check(deployment.pk)
    assert deployment.drift_state == Deployment.OUT_OF_SYNC
    assert {
        "object": f"LocalModelServer/{deployment.name}",
        "field": "running",
        "applied": True,
        "live": False,
    } in deployment.drift_diff
    assert AuditEvent.objects.filter(verb="deployment.out_of_sync", object_id=str(deployment.pk)).exists()

    # staging requires an approval: the redeploy is a request until the approver agrees.
    asked = services.rollout_redeploy(actor=engineer, deployment_id=deployment.pk, reason="server died")
    assert isinstance(asked, PromotionRequest) and asked.kind == PromotionRequest.REDEPLOY
    approve(browser_client, approver, asked)
    sent_tasks.run_all()
    redeploy = Rollout.objects.get(request=asked)
    asked.refresh_from_db()
    assert asked.state == PromotionRequest.LIVE
    assert redeploy.state == Rollout.LIVE, redeploy.reason
    deployment.refresh_from_db()
    assert deployment.live_rollout == redeploy and deployment.drift_state == Deployment.IN_SYNC
    assert _predict(deployment, label="staging")["predictions"]
    assert drift_check(deployment.pk).drift_state == Deployment.IN_SYNC

    asked = services.rollout_undeploy(actor=engineer, deployment_id=deployment.pk, reason="retired")
    assert isinstance(asked, PromotionRequest) and asked.kind == PromotionRequest.UNDEPLOY
    approve(browser_client, approver, asked)
    sent_tasks.run_all()
    undeploy = Rollout.objects.get(request=asked)
    asked.refresh_from_db()
    assert asked.state == PromotionRequest.DONE
    assert undeploy.state == Rollout.DONE, undeploy.reason
    deployment.refresh_from_db()
    assert deployment.state == Deployment.UNDEPLOYED and deployment.live_rollout is None
    assert not (local_root / deployment.name).exists()
    assert mlflow_store.client().get_registered_model("iris").aliases == {}
