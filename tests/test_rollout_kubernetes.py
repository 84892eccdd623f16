"""The same rollout pipeline against Kubernetes: the real `kubernetes` client over HTTP to the
test API server (tests/kubeapi), whose pods run real model servers reached through the pod
proxy. Every manifest a rollout applies is checked against the Kubernetes schemas."""

import html
import time
from pathlib import Path

import kubernetes_validate
import pytest

from deployer import services
from deployer.backends import backend_for
from deployer.backends.errors import TransientError
from deployer.drift_check import drift_check
from deployer.export import export_version
from deployer.models import Deployment, DeploymentTarget, Rollout
from registry.models import ModelVersion
from registry.promotions.models import PromotionRequest
from tests.kubeapi import FakeKubeApiServer
from tests.test_rollout_local import approve, promote

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
K8S_VERSION = "1.33.0"
NAMESPACE = "ml-staging"


class Cluster:
    def __init__(self, server: FakeKubeApiServer, target: DeploymentTarget, broken: set):
        self.server, self.target, self.broken = server, target, broken


def fetcher(broken: set):
    """The pods' init container: export the version from this test's MLflow store; versions in
    ``broken`` get a SavedModel TF Serving cannot load."""

    def fetch(model: str, version: int, model_root: str) -> None:
        if version in broken:
            target = Path(model_root) / model / str(version)
            target.mkdir(parents=True, exist_ok=True)
            (target / "saved_model.pb").write_bytes(b"not a protobuf")
            return
        export_version(
            ModelVersion.objects.select_related("model").get(model__name=model, version=version), Path(model_root)
        )

    return fetch


def kubernetes_target(environment, kubeconfig: Path, **fields) -> DeploymentTarget:
    """A Kubernetes target for the environment on the test API server the kubeconfig names."""
    return DeploymentTarget.objects.create(
        environment=environment,
        backend=DeploymentTarget.KUBERNETES,
        kubeconfig_path=str(kubeconfig),
        kube_context="test",
        namespace=NAMESPACE,
        image="tensorflow/serving:2.19.0",
        **{"rollout_timeout_seconds": 90, **fields},
    )


@pytest.fixture
def cluster(tmp_path, staging, iris):
    """A Kubernetes target for staging. The pods' init container exports the version from
    this test's MLflow store; versions in `broken` get a SavedModel TF Serving cannot load."""
    broken: set = set()
    with FakeKubeApiServer(fetch_model=fetcher(broken), workdir=tmp_path / "cluster") as server:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig", namespace=NAMESPACE)
        target = kubernetes_target(staging, kubeconfig, replicas=1, progress_deadline_seconds=4)
        yield Cluster(server, target, broken)


def _valid(objects: list[dict]) -> None:
    assert objects, "the rollout stored no manifests"
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def _predict(deployment: Deployment, version: int) -> list:
    rollout = deployment.live_rollout
    backend = backend_for(deployment)
    from deployer.pipeline import Run

    release = Run(rollout, "test").release()
    answers = backend.call(
        release, "POST", "/v1/models/iris/labels/staging:predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]}
    )
    assert answers and all(a.status == 200 for a in answers), answers
    return [a.body["predictions"] for a in answers]


def test_an_approved_promotion_rolls_out_to_kubernetes_and_answers_through_the_pod_proxy(
    cluster, browser_client, engineer, approver, iris, sent_tasks, mlflow_store
):
    req = promote(
        browser_client, engineer, approver, iris.versions.get(version=1), cluster.target.environment, sent_tasks
    )

    assert req.state == PromotionRequest.LIVE, req.state_reason
    rollout = Rollout.objects.get(request=req)
    _valid(rollout.manifests)
    assert [o["kind"] for o in rollout.manifests] == ["ConfigMap", "Service", "Deployment"]
    assert "successfully rolled out" in next(s for s in rollout.steps if s["name"] == "wait")["detail"]
    live = cluster.server.get("Deployment", NAMESPACE, rollout.deployment.name)
    assert live["metadata"]["labels"]["modelgate.io/version"] == "1"
    assert any(f["manager"] == "modelgate" and f["operation"] == "Apply" for f in live["metadata"]["managedFields"])
    assert {(c.verb, c.resource) for c in cluster.server.calls if c.verb == "patch"} == {
        ("patch", "configmaps"),
        ("patch", "services"),
        ("patch", "deployments"),
    }
    assert str(mlflow_store.client().get_model_version_by_alias("iris", "staging").version) == "1"
    deployment = Deployment.objects.get(pk=rollout.deployment_id)
    assert len(_predict(deployment, 1)[0][0]) == 3


def test_a_version_that_cannot_load_in_its_pods_is_rolled_back_and_the_old_pods_keep_serving(
    cluster, browser_client, engineer, approver, iris, sent_tasks, mlflow_store
):
    promote(browser_client, engineer, approver, iris.versions.get(version=1), cluster.target.environment, sent_tasks)
    cluster.broken.add(2)

    req = promote(
        browser_client, engineer, approver, iris.versions.get(version=2), cluster.target.environment, sent_tasks
    )

    assert req.state == PromotionRequest.ROLLED_BACK, req.state_reason
    # It fails on the first crash, not at the progress deadline, and says what the container said.
    assert "container tensorflow-serving is CrashLoopBackOff" in req.state_reason
    assert "Loading servable failed" in req.state_reason and "Revision 1 (v1) serves again" in req.state_reason
    rollout = Rollout.objects.get(request=req)
    _valid(rollout.manifests)
    steps = {s["name"]: s["state"] for s in rollout.steps}
    assert steps["wait"] == "failed" and steps["alias"] == "skipped" and steps["restore_verify"] == "done"
    assert str(mlflow_store.client().get_model_version_by_alias("iris", "staging").version) == "1"
    live = cluster.server.get("Deployment", NAMESPACE, rollout.deployment.name)
    assert live["spec"]["template"]["metadata"]["labels"]["modelgate.io/version"] == "1"
    deployment = Deployment.objects.get(pk=rollout.deployment_id)
    assert deployment.live_rollout.version.version == 1
    assert _predict(deployment, 1)


def test_an_edit_of_the_live_deployment_shows_as_drift_and_reapplying_clears_it(
    cluster, browser_client, engineer, approver, iris, sent_tasks
):
    promote(browser_client, engineer, approver, iris.versions.get(version=1), cluster.target.environment, sent_tasks)
    deployment = Deployment.objects.get(model=iris)
    assert drift_check(deployment.pk).drift_state == Deployment.IN_SYNC

    def hand_edit(obj):
        obj["spec"]["replicas"] = 3
        obj["spec"]["template"]["spec"]["containers"][0]["image"] = "tensorflow/serving:2.18.0"

    cluster.server.edit("Deployment", NAMESPACE, deployment.name, hand_edit)
    deployment = drift_check(deployment.pk)
    assert deployment.drift_state == Deployment.OUT_OF_SYNC
    fields = {(c["field"], c["applied"], c["live"]) for c in deployment.drift_diff}
    assert ("image", "tensorflow/serving:2.19.0", "tensorflow/serving:2.18.0") in fields
    assert ("replicas", 1, 3) in fields

    # The environment requires an approval: "Re-apply" is a request its approver decides.
    asked = services.rollout_redeploy(actor=engineer, deployment_id=deployment.pk, reason="hand edit")
    assert isinstance(asked, PromotionRequest) and asked.kind == PromotionRequest.REDEPLOY
    approve(browser_client, approver, asked)
    sent_tasks.run_all()
    deployment.refresh_from_db()
    assert deployment.live_rollout.kind == Rollout.REDEPLOY and deployment.live_rollout.state == Rollout.LIVE
    assert drift_check(deployment.pk).drift_state == Deployment.IN_SYNC
    live = cluster.server.get("Deployment", NAMESPACE, deployment.name)
    assert live["spec"]["replicas"] == 1
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "tensorflow/serving:2.19.0"


def test_a_temporary_api_server_error_gives_the_rollout_back_and_a_retry_finishes_it(
    cluster, browser_client, engineer, approver, iris, sent_tasks
):
    from registry.promotions import services as promotions

    req = promotions.promotion_request(
        actor=engineer,
        version=iris.versions.get(version=1),
        environment=cluster.target.environment,
        justification="ship",
    )
    promotions.promotion_approve(actor=approver, request_id=req.pk, comment="ok")
    cluster.server.inject_error(503, verb="patch", count=1)

    with pytest.raises(TransientError):
        sent_tasks.run_all()  # called directly, Celery's retry re-raises the error
    rollout = Rollout.objects.get(request=req)
    assert rollout.state == Rollout.QUEUED and rollout.worker == ""
    apply = next(s for s in rollout.steps if s["name"] == "apply")
    assert apply["state"] == "running" and apply["detail"].startswith("retrying:")

    from deployer.tasks import run_rollout

    assert run_rollout(rollout.pk) == Rollout.LIVE
    rollout.refresh_from_db()
    assert rollout.attempts == 2 and all(s["state"] == "done" for s in rollout.steps)


def test_a_missing_kubeconfig_fails_the_rollout_with_what_to_fix(
    cluster, browser_client, engineer, approver, iris, sent_tasks, tmp_path
):
    DeploymentTarget.objects.filter(pk=cluster.target.pk).update(kubeconfig_path=str(tmp_path / "nope"))
    req = promote(
        browser_client, engineer, approver, iris.versions.get(version=1), cluster.target.environment, sent_tasks
    )
    assert req.state == PromotionRequest.FAILED
    assert "nope" in req.state_reason and cluster.server.token not in req.state_reason


def test_a_rollout_into_a_namespace_that_forbids_its_pods_fails_in_seconds_and_says_which_fields(
    cluster, browser_client, engineer, approver, viewer, iris, sent_tasks
):
    """The namespace enforces restricted (pod-security.kubernetes.io/enforce) but the target says
    privileged, so the pods are rendered without a security context: PodSecurity refuses every pod
    the ReplicaSet controller creates. The rollout ends on the Deployment's ReplicaFailure
    condition, long before the 600 s progress deadline, and the pages quote the API server."""
    cluster.server.label_namespace(NAMESPACE, {"pod-security.kubernetes.io/enforce": "restricted"})
    DeploymentTarget.objects.filter(pk=cluster.target.pk).update(
        pod_security_level="privileged", progress_deadline_seconds=600
    )
    started = time.monotonic()
    req = promote(
        browser_client, engineer, approver, iris.versions.get(version=1), cluster.target.environment, sent_tasks
    )
    assert time.monotonic() - started < 45

    assert req.state == PromotionRequest.FAILED, req.state_reason
    rollout = Rollout.objects.get(request=req)
    wait = next(s for s in rollout.steps if s["name"] == "wait")
    assert wait["state"] == "failed" and "cannot create its pods: FailedCreate" in wait["detail"]
    assert {s["name"]: s["state"] for s in rollout.steps}["cleanup"] == "done"  # nothing left half-applied
    page = browser_client(viewer).get(f"/rollouts/{rollout.pk}/").content.decode()
    text = html.unescape(page)
    assert 'violates PodSecurity "restricted:latest"' in text
    for field in (
        "securityContext.allowPrivilegeEscalation=false",
        'securityContext.capabilities.drop=["ALL"]',
        "securityContext.runAsNonRoot=true",
        "securityContext.seccompProfile.type",
    ):
        assert field in text
    deployment_page = html.unescape(
        browser_client(viewer).get(f"/deployments/{rollout.deployment_id}/").content.decode()
    )
    assert 'violates PodSecurity "restricted:latest"' in deployment_page
    assert cluster.server.get("Deployment", NAMESPACE, rollout.deployment.name) is None


def test_an_apply_the_servers_schema_refuses_fails_for_good_with_the_servers_message(
    cluster, browser_client, engineer, approver, iris, sent_tasks, monkeypatch
):
    """A manifest with a field the API server does not know answers 500 ("failed to create typed
    patch object"): the rollout fails at once instead of being retried as a temporary error."""
    from deployer import manifests

    real = manifests.deployment

    def with_a_typo(target, release):
        rendered = real(target, release)
        rendered["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
        return rendered

    monkeypatch.setattr(manifests, "deployment", with_a_typo)

    req = promote(
        browser_client, engineer, approver, iris.versions.get(version=1), cluster.target.environment, sent_tasks
    )
    assert req.state == PromotionRequest.FAILED, req.state_reason
    rollout = Rollout.objects.get(request=req)
    assert rollout.attempts == 1
    assert (
        "failed to create typed patch object (ml-staging/tfs-iris-staging; apps/v1, Kind=Deployment): "
        '.spec.template.spec.containers[name="tensorflow-serving"].readinesProbe: field not declared in schema'
    ) in rollout.reason


def test_a_forbidden_update_is_rolled_back_and_the_replicas_panel_shows_the_replica_sets_refusal(
    cluster, browser_client, engineer, approver, viewer, iris, sent_tasks
):
    """v1 serves in a restricted namespace (its pods are hardened); v2 is rendered for a privileged
    namespace by mistake. The refusal exists only as the new ReplicaSet's FailedCreate event: the
    replicas panel lists it beside the pods' own warnings."""
    cluster.server.label_namespace(NAMESPACE, {"pod-security.kubernetes.io/enforce": "restricted"})
    promote(browser_client, engineer, approver, iris.versions.get(version=1), cluster.target.environment, sent_tasks)
    DeploymentTarget.objects.filter(pk=cluster.target.pk).update(
        pod_security_level="privileged", progress_deadline_seconds=600
    )
    req = promote(
        browser_client, engineer, approver, iris.versions.get(version=2), cluster.target.environment, sent_tasks
    )

    assert req.state == PromotionRequest.ROLLED_BACK, req.state_reason
    assert "violates PodSecurity" in req.state_reason and "Revision 1 (v1) serves again" in req.state_reason
    deployment = Deployment.objects.get(model=iris)
    panel = html.unescape(browser_client(viewer).get(f"/deployments/{deployment.pk}/health/").content.decode())
    assert "1</strong> of 1 ready" in panel
    assert "FailedCreate" in panel and f"ReplicaSet {deployment.name}-" in panel
    assert 'Error creating: pods "' in panel and 'violates PodSecurity "restricted:latest"' in panel
