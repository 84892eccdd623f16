"""The rollout pipeline end to end on the local backend: a real model-server process serving
real SavedModels exported from MLflow."""

import json
import urllib.request

import pytest

from console.audit.models import AuditEvent
from deployer.models import Deployment, Rollout
from registry.promotions import services as promotions
from registry.promotions.models import PromotionRequest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _predict(deployment, label=None, version=None):
    path = f"/v1/models/{deployment.model.name}" + (f"/labels/{label}" if label else f"/versions/{version}")
    request = urllib.request.Request(
        f"http://127.0.0.1:{deployment.local_port}{path}:predict",
        data=json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def approve(client, approver, req):
    response = client(approver).post(f"/promotions/{req.pk}/approve/", {"approve-comment": "ship it"})
    assert response.status_code in (200, 302), response.content[:500]


def promote(browser_client, engineer, approver, version, environment, sent_tasks):
    req = promotions.promotion_request(
        actor=engineer, version=version, environment=environment, justification="better accuracy"
    )
    approve(browser_client, approver, req)
    assert sent_tasks == [("deployer.deploy_promotion", [req.pk])]
    sent_tasks.run_all()
    req.refresh_from_db()
    return req


def test_an_approved_promotion_goes_live_on_the_local_backend_and_answers(
    browser_client, engineer, approver, iris, staging_local, sent_tasks, mlflow_store
):
    v1 = iris.versions.get(version=1)
    req = promote(browser_client, engineer, approver, v1, staging_local.environment, sent_tasks)

    assert req.state == PromotionRequest.LIVE, req.state_reason
    rollout = Rollout.objects.get(request=req)
    assert rollout.state == Rollout.LIVE
    assert [s["name"] for s in rollout.steps] == ["gates", "export", "apply", "wait", "verify", "alias"]
    assert all(s["state"] == "done" and s["started_at"] and s["finished_at"] for s in rollout.steps)
    assert "smoke predict answered" in rollout.steps[4]["detail"]
    # The alias moved in MLflow itself, not only in the mirror.
    assert str(mlflow_store.client().get_model_version_by_alias("iris", "staging").version) == "1"
    deployment = Deployment.objects.get(model=iris)
    assert deployment.state == Deployment.SERVING and deployment.live_rollout == rollout
    answer = _predict(deployment, label="staging")
    assert len(answer["predictions"]) == 1 and len(answer["predictions"][0]) == 3
    verbs = list(AuditEvent.objects.filter(object_type="deployer.rollout").values_list("verb", flat=True))
    assert {"rollout.created", "rollout.started", "rollout.live"} <= set(verbs)


def test_a_version_that_cannot_load_is_rolled_back_and_the_previous_one_keeps_answering(
    browser_client, engineer, approver, iris, staging_local, sent_tasks, settings, mlflow_store
):
    v1, v2 = iris.versions.get(version=1), iris.versions.get(version=2)
    promote(browser_client, engineer, approver, v1, staging_local.environment, sent_tasks)
    deployment = Deployment.objects.get(model=iris)
    # v2's exported SavedModel is damaged on disk: TF Serving (and the local server) fail to load it.
    from deployer.export import export_version

    broken = export_version(v2, settings.DEPLOYER_LOCAL_ROOT / deployment.name / "models")
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")

    req = promote(browser_client, engineer, approver, v2, staging_local.environment, sent_tasks)

    assert req.state == PromotionRequest.ROLLED_BACK
    assert "could not load" in req.state_reason and "v1" in req.state_reason
    rollout = Rollout.objects.get(request=req)
    assert rollout.state == Rollout.ROLLED_BACK
    names = {s["name"]: s["state"] for s in rollout.steps}
    assert names["wait"] == "failed" and names["verify"] == "skipped" and names["alias"] == "skipped"
    assert names["restore_verify"] == "done"
    assert str(mlflow_store.client().get_model_version_by_alias("iris", "staging").version) == "1"
    deployment.refresh_from_db()
    assert deployment.live_rollout.version == v1
    assert _predict(deployment, label="staging")["predictions"]
    assert _predict(deployment, version=1)["predictions"]


def test_running_a_finished_rollout_again_changes_nothing(
    browser_client, engineer, approver, iris, staging_local, sent_tasks
):
    req = promote(
        browser_client, engineer, approver, iris.versions.get(version=1), staging_local.environment, sent_tasks
    )
    rollout = Rollout.objects.get(request=req)
    events = AuditEvent.objects.count()
    from deployer.tasks import deploy_promotion, run_rollout

    assert deploy_promotion(req.pk) is None
    assert run_rollout(rollout.pk) is None
    assert AuditEvent.objects.count() == events
    assert Rollout.objects.filter(deployment=rollout.deployment).count() == 1


def test_a_first_deployment_that_cannot_load_leaves_nothing_behind(
    browser_client, engineer, approver, iris, staging_local, sent_tasks, settings, mlflow_store
):
    from deployer.export import export_version
    from deployer.services import deployment_get_or_create

    v1 = iris.versions.get(version=1)
    deployment = deployment_get_or_create(target=staging_local, model=iris)
    root = settings.DEPLOYER_LOCAL_ROOT / deployment.name
    (export_version(v1, root / "models") / "saved_model.pb").write_bytes(b"garbage")

    req = promote(browser_client, engineer, approver, v1, staging_local.environment, sent_tasks)

    assert req.state == PromotionRequest.FAILED and "could not load" in req.state_reason
    rollout = Rollout.objects.get(request=req)
    assert rollout.state == Rollout.FAILED
    assert [s["name"] for s in rollout.steps][-1] == "cleanup" and rollout.steps[-1]["state"] == "done"
    assert not root.exists()  # the model server was stopped and its files removed
    deployment.refresh_from_db()
    assert deployment.live_rollout is None and deployment.state == Deployment.NEW
    assert mlflow_store.client().get_registered_model("iris").aliases == {}
