"""Pick the backend a deployment's target asks for."""

from django.conf import settings

from deployer import manifests
from deployer.backends.errors import PermanentError


def target_spec(target) -> manifests.Target:
    """The manifests' view of a DeploymentTarget row."""
    autoscaling = None
    if target.autoscale_min and target.autoscale_max:
        autoscaling = manifests.Autoscaling(
            min_replicas=target.autoscale_min,
            max_replicas=target.autoscale_max,
            cpu_utilization=target.autoscale_cpu_percent,
        )
    return manifests.Target(
        namespace=target.namespace,
        image=target.image,
        fetcher_image=target.fetcher_image or settings.MODELGATE_FETCHER_IMAGE,
        mlflow_tracking_uri=settings.DEPLOYER_MLFLOW_TRACKING_URI,
        replicas=target.replicas,
        cpu_request=target.cpu_request,
        cpu_limit=target.cpu_limit,
        memory_request=target.memory_request,
        memory_limit=target.memory_limit,
        node_selector=dict(target.node_selector or {}),
        tolerations=tuple(target.tolerations or ()),
        extra_labels=dict(target.extra_labels or {}),
        autoscaling=autoscaling,
        startup_seconds=target.startup_seconds,
        progress_deadline_seconds=target.progress_deadline_seconds,
        pod_security_level=target.pod_security_level,
        gateway=manifests.Gateway(name=target.gateway_name, namespace=target.gateway_namespace)
        if target.gateway_name
        else None,
    )


def backend_for(deployment):
    """The backend serving ``deployment`` (its target row must be loaded)."""
    target = deployment.target
    if target.backend == target.LOCAL:
        from deployer.backends.local import LocalBackend

        if not deployment.local_port:
            raise PermanentError(f"{deployment} has no local port assigned.")
        return LocalBackend(root=settings.DEPLOYER_LOCAL_ROOT, name=deployment.name, port=deployment.local_port)
    from deployer.backends.kubernetes import KubernetesBackend
    from deployer.backends.kubernetes_api import KubernetesApi

    client = KubernetesApi(
        namespace=target.namespace,
        kubeconfig=target.kubeconfig_path or None,
        context=target.kube_context or None,
        in_cluster=target.in_cluster,
    )
    return KubernetesBackend(target=target_spec(target), client=client)
