"""Deployment targets: the admin refuses what would fail at deploy time, and never shows a secret."""

import pytest
from django.core.exceptions import ValidationError

from deployer.backends import target_spec
from deployer.manifests import Gateway
from deployer.models import DeploymentTarget

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"image": "tensorflow/serving"}, "image"),
        ({"image": "tensorflow/serving:latest"}, "image"),
        ({"namespace": "Not_A_Namespace"}, "namespace"),
        ({"autoscale_min": 3, "autoscale_max": 2}, "autoscale_max"),
        ({"autoscale_min": 2}, "autoscale_max"),
        ({"backend": "kubernetes", "in_cluster": True, "kubeconfig_path": "/etc/kube/config"}, "kubeconfig_path"),
        ({"gateway_name": "Edge_Gateway"}, "gateway_name"),
        ({"gateway_name": "edge", "gateway_namespace": "-gateways"}, "gateway_namespace"),
        ({"gateway_namespace": "gateways"}, "gateway_name"),
    ],
)
def test_a_target_that_could_not_deploy_is_refused_naming_the_field(staging, fields, field):
    target = DeploymentTarget(environment=staging, **fields)
    with pytest.raises(ValidationError) as caught:
        target.full_clean()
    assert field in caught.value.message_dict


def test_a_pinned_target_is_accepted(staging):
    DeploymentTarget(
        environment=staging,
        backend="kubernetes",
        image="tensorflow/serving:2.19.0",
        autoscale_min=1,
        autoscale_max=4,
        kubeconfig_path="/var/run/secrets/kube/config",
    ).full_clean()


def test_the_admin_saves_a_target_with_an_audit_event_and_shows_no_credentials(
    browser_client, admin_user, staging, tmp_path
):
    from console.audit.models import AuditEvent

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("users: [{name: u, user: {token: s3cr3t-token}}]")
    client = browser_client(admin_user)
    response = client.post(
        "/admin/deployer/deploymenttarget/add/",
        {
            "environment": staging.pk,
            "backend": "kubernetes",
            "kubeconfig_path": str(kubeconfig),
            "kube_context": "prod",
            "namespace": "serving",
            "image": "tensorflow/serving:2.19.0",
            "replicas": 2,
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
            "pod_security_level": "baseline",
            "gateway_name": "edge",
            "gateway_namespace": "gateways",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    target = DeploymentTarget.objects.get(environment=staging)
    assert target.pod_security_level == "baseline"
    assert AuditEvent.objects.filter(verb="target.saved", object_id=str(target.pk)).exists()
    page = client.get(f"/admin/deployer/deploymenttarget/{target.pk}/change/").content.decode()
    assert "s3cr3t-token" not in page
    assert 'name="pod_security_level"' in page and '<option value="baseline" selected>' in page
    # A Gateway on the target: its models' traffic goes through an HTTPRoute, canaries by weight.
    assert 'name="gateway_name"' in page and 'value="edge"' in page
    assert target_spec(target).gateway == Gateway(name="edge", namespace="gateways")
