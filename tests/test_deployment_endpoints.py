"""Where clients call a deployment: its URL (and external URL) in the API and on its page, and
that the URL really reaches the model on both backends."""

import json
import urllib.request
from urllib.parse import urlsplit

import pytest
from django.core.exceptions import ValidationError

from deployer.backends import backend_for
from deployer.endpoints import endpoint
from deployer.models import Deployment, DeploymentTarget
from registry.promotions.models import PromotionRequest
from tests.test_deployer_pages import served  # noqa: F401 - served is a fixture
from tests.test_rollout_kubernetes import NAMESPACE, cluster  # noqa: F401 - the cluster fixture
from tests.test_rollout_local import promote

IRIS = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


def _kubernetes(deployment, **target_fields) -> Deployment:
    DeploymentTarget.objects.filter(pk=deployment.target_id).update(
        backend=DeploymentTarget.KUBERNETES, namespace="ml-staging", **target_fields
    )
    return Deployment.objects.select_related("target__environment", "model").get(pk=deployment.pk)


# --- what is shown ---------------------------------------------------------------------


@pytest.mark.django_db
def test_a_local_deployment_is_called_on_its_port_by_its_environments_label(api, viewer, served):
    body = api(viewer).get(f"/api/v1/deployments/{served.pk}/").json()

    assert body["url"] == "http://127.0.0.1:18999/v1/models/iris/labels/staging"
    assert body["external_url"] is None
    [row] = api(viewer).get("/api/v1/deployments/").json()["results"]
    assert row["url"] == body["url"]


@pytest.mark.django_db
def test_a_kubernetes_deployment_is_called_on_its_services_in_cluster_name_and_the_external_base(api, viewer, served):
    _kubernetes(served, external_base_url="https://models.example.com/serving/")

    body = api(viewer).get(f"/api/v1/deployments/{served.pk}/").json()

    assert body["url"] == ("http://tfs-iris-staging.ml-staging.svc.cluster.local:8501/v1/models/iris/labels/staging")
    assert body["external_url"] == "https://models.example.com/serving/v1/models/iris/labels/staging"


@pytest.mark.django_db
def test_an_undeployed_deployment_has_no_url(api, viewer, served):
    Deployment.objects.filter(pk=served.pk).update(state=Deployment.UNDEPLOYED)
    _kubernetes(served, external_base_url="https://models.example.com")

    body = api(viewer).get(f"/api/v1/deployments/{served.pk}/").json()

    assert (body["url"], body["external_url"]) == (None, None)


@pytest.mark.django_db
def test_a_model_name_that_is_not_a_plain_path_segment_is_quoted(served):
    served.model.name = "churn v2/eu"
    url = endpoint(served).url
    assert url.endswith("/v1/models/churn%20v2%2Feu/labels/staging")
    assert urlsplit(url).path.count("/") == 5


@pytest.mark.django_db
def test_the_deployment_page_shows_the_urls_to_copy(browser_client, viewer, served):
    _kubernetes(served, external_base_url="https://models.example.com")

    html = browser_client(viewer).get(f"/deployments/{served.pk}/").content.decode()

    assert (
        'readonly value="http://tfs-iris-staging.ml-staging.svc.cluster.local:8501/v1/models/iris/labels/staging"'
    ) in html
    assert 'readonly value="https://models.example.com/v1/models/iris/labels/staging"' in html


@pytest.mark.django_db
@pytest.mark.parametrize(
    "value",
    [
        "models.example.com",
        "ftp://models.example.com",
        "https://",
        "https://user:secret@models.example.com",
        "https://models.example.com/?env=prod",
        "https://models.example.com/#x",
        "javascript:alert(1)",
    ],
)
def test_an_external_base_url_that_is_not_a_plain_http_url_is_refused_naming_the_field(staging, value):
    target = DeploymentTarget(environment=staging, external_base_url=value)
    with pytest.raises(ValidationError) as caught:
        target.full_clean()
    assert list(caught.value.message_dict) == ["external_base_url"]


@pytest.mark.django_db
def test_the_admin_refuses_a_bad_external_base_url_and_saves_nothing(browser_client, admin_user, staging):
    response = browser_client(admin_user).post(
        "/admin/deployer/deploymenttarget/add/",
        {
            "environment": staging.pk,
            "backend": "local",
            "namespace": "serving",
            "image": "tensorflow/serving:2.19.0",
            "external_base_url": "models.example.com",
            "replicas": 1,
            "cpu_request": "250m",
            "cpu_limit": "1",
            "memory_request": "512Mi",
            "memory_limit": "1Gi",
            "autoscale_cpu_percent": 70,
            "node_selector": "{}",
            "tolerations": "[]",
            "extra_labels": "{}",
            "startup_seconds": 600,
            "progress_deadline_seconds": 600,
            "rollout_timeout_seconds": 900,
            "guard_minutes": 10,
        },
    )

    assert response.status_code == 200
    assert "An http:// or https:// URL" in response.content.decode()
    assert not DeploymentTarget.objects.exists()


# --- the URL reaches the model ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_the_local_url_answers_a_predict(
    api, viewer, browser_client, engineer, approver, iris, staging_local, sent_tasks
):
    req = promote(
        browser_client, engineer, approver, iris.versions.get(version=1), staging_local.environment, sent_tasks
    )
    assert req.state == PromotionRequest.LIVE, req.state_reason
    deployment = Deployment.objects.get(model=iris)
    url = api(viewer).get(f"/api/v1/deployments/{deployment.pk}/").json()["url"]

    request = urllib.request.Request(
        f"{url}:predict", data=json.dumps(IRIS).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        predictions = json.loads(response.read())["predictions"]

    assert len(predictions) == 1 and len(predictions[0]) == 3
    backend_for(deployment).stop()


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_the_kubernetes_url_names_the_applied_service_and_its_path_answers_behind_it(
    cluster, api, viewer, browser_client, engineer, approver, iris, sent_tasks
):  # noqa: F811
    req = promote(
        browser_client, engineer, approver, iris.versions.get(version=1), cluster.target.environment, sent_tasks
    )
    assert req.state == PromotionRequest.LIVE, req.state_reason
    deployment = Deployment.objects.get(model=iris)
    url = urlsplit(api(viewer).get(f"/api/v1/deployments/{deployment.pk}/").json()["url"])

    # The host and port are those of the Service the rollout applied ...
    [service] = cluster.server.list("Service", NAMESPACE)
    assert url.hostname == f"{service['metadata']['name']}.{NAMESPACE}.svc.cluster.local"
    [port] = [p for p in service["spec"]["ports"] if p["port"] == url.port]
    # ... which selects the serving pod, and sends that port to the pod's REST port.
    client = backend_for(deployment).client
    [pod] = client.serving_pods(deployment.name)
    pod_labels = cluster.server.get("Pod", NAMESPACE, pod)["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    [container] = [
        c for c in cluster.server.get("Pod", NAMESPACE, pod)["spec"]["containers"] if c["name"] == "tensorflow-serving"
    ]
    [target_port] = [p["containerPort"] for p in container["ports"] if p["name"] == port["targetPort"]]
    # The URL's path, sent to that port of the pod, answers a predict.
    status, answer = client.proxy(pod, "POST", f"{url.path}:predict", IRIS, port=target_port)
    client.close()

    assert status == 200 and len(answer["predictions"]) == 1, answer
