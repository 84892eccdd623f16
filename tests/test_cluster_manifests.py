"""cluster/: Modelgate's own Kubernetes manifests. Every object validates against the
Kubernetes schemas (kubernetes-validate, strict, 1.33), nothing is cluster-wide, images are
pinned, pods run as non-root, and the RBAC Roles grant exactly what the deployer calls: a whole
rollout runs through deployer.backends.kubernetes_api against the test API server (tests/kubeapi),
and its recorded requests are checked against the Roles both ways."""

import os
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from deployer import manifests as m
from deployer import tfserving
from deployer.backends.kubernetes_api import KubernetesApi
from tests.kubeapi import podsecurity
from tests.kubeapi.fixtures import (  # noqa: F401 - fixtures
    TARGET,
    fetch_model,
    fetched,
    kube,
    kubeconfig,
    rendered,
    savedmodels,
)
from tests.test_compose import is_read_by_modelgate, read_variables

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "cluster"
K8S_VERSION = "1.33.0"
APP_NAMESPACE = "modelgate"
ROW = [5.1, 3.5, 1.4, 0.2]


def documents() -> list[tuple[str, dict]]:
    """(file name, object) for every object under cluster/; kustomization.yaml is kustomize's
    configuration, not a Kubernetes object, and is checked on its own."""
    found = []
    for path in sorted(CLUSTER.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def objects(kind: str) -> list[dict]:
    return [doc for _, doc in documents() if doc["kind"] == kind]


def one(kind: str, name: str) -> dict:
    (found,) = [doc for doc in objects(kind) if doc["metadata"]["name"] == name]
    return found


def pod_specs() -> dict[str, dict]:
    specs = {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in objects("Deployment") + objects("Job")}
    assert set(specs) == {"modelgate-web", "modelgate-worker", "modelgate-beat", "modelgate-migrate"}
    return specs


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


# --- the manifests ---------------------------------------------------------------------------


@pytest.mark.parametrize("name,obj", documents(), ids=lambda v: v if isinstance(v, str) else v.get("kind"))
def test_every_object_validates_against_the_kubernetes_schemas(name, obj):
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_example():
    kustomization = yaml.safe_load((CLUSTER / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization" and "namespace" not in kustomization
    files = {p.name for p in CLUSTER.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files - {"secret.example.yaml"}
    for image in kustomization.get("images", []):
        assert image.get("digest") or (image.get("newTag") and image["newTag"] != "latest"), image


def test_kustomize_builds_the_manifests_and_keeps_the_roles_in_the_target_namespace():
    if shutil.which("kubectl") is None:
        # CI installs kubectl (.ci/run), so there the test must run; locally it may be absent.
        if os.environ.get("MODELGATE_BROWSER_REQUIRED") or os.environ.get("CI"):
            pytest.fail("kubectl is not installed, and CI requires this test to run")
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    built = list(
        yaml.safe_load_all(
            subprocess.run(["kubectl", "kustomize", str(CLUSTER)], check=True, capture_output=True, text=True).stdout
        )
    )
    assert len(built) == len(documents()) - 1  # all but the Secret example
    for obj in built:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    roles = {(o["kind"], o["metadata"]["namespace"]) for o in built if o["kind"] in ("Role", "RoleBinding")}
    assert roles == {("Role", "modelgate-serving"), ("RoleBinding", "modelgate-serving")}


def test_nothing_is_cluster_wide():
    kinds = {doc["kind"] for _, doc in documents()}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    for kind in ("Role", "RoleBinding"):
        for obj in objects(kind):
            assert obj["metadata"]["namespace"] != APP_NAMESPACE, "RBAC belongs in the target namespace"
    for binding in objects("RoleBinding"):
        assert binding["roleRef"]["kind"] == "Role"
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount" and subject["namespace"] == APP_NAMESPACE
            assert one("ServiceAccount", subject["name"])
    for role in objects("Role"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule


def test_every_namespaced_object_names_its_namespace():
    namespaces = {ns["metadata"]["name"] for ns in objects("Namespace")}
    for name, obj in documents():
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") in namespaces, (name, obj["kind"])


def test_images_are_pinned():
    for name, spec in pod_specs().items():
        for container in containers(spec):
            image = container["image"]
            tag = image.rsplit("/", 1)[-1]
            assert "@sha256:" in image or (":" in tag and not tag.endswith(":latest")), (name, image)


def test_pods_run_as_non_root_with_resources_and_nothing_to_escalate():
    for name, spec in pod_specs().items():
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] != 0, name
        assert context["seccompProfile"]["type"] == "RuntimeDefault", name
        for container in containers(spec):
            assert {"requests", "limits"} <= set(container["resources"]), (name, container["name"])
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
            assert security["readOnlyRootFilesystem"] is True
            writable = {mount["mountPath"] for mount in container.get("volumeMounts", []) if not mount.get("readOnly")}
            assert {"/tmp", "/var/lib/modelgate"} <= writable, (name, container["name"])


def test_every_pod_meets_the_restricted_standard_its_namespace_enforces():
    """The test API server's PodSecurity checks (tests/kubeapi/podsecurity.py, ported from
    k8s.io/pod-security-admission) find nothing to refuse; both namespaces enforce restricted,
    the serving one because the TF Serving pods Modelgate renders meet it too."""
    for name, spec in pod_specs().items():
        assert podsecurity.evaluate("restricted", spec) == "", name
    for namespace in objects("Namespace"):
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted", namespace
    serving = rendered(1, m.Target(**{**TARGET.__dict__, "namespace": "modelgate-serving"}))[2]
    assert podsecurity.evaluate("restricted", serving["spec"]["template"]["spec"]) == ""


def test_only_the_web_and_worker_pods_carry_an_api_token():
    specs = pod_specs()
    assert specs["modelgate-web"]["serviceAccountName"] == "modelgate-web"
    assert specs["modelgate-worker"]["serviceAccountName"] == "modelgate-worker"
    for name in ("modelgate-beat", "modelgate-migrate"):
        assert specs[name]["automountServiceAccountToken"] is False and "serviceAccountName" not in specs[name]


def test_web_probes_healthz_with_a_host_modelgate_allows():
    from django.urls import reverse

    web = one("Deployment", "modelgate-web")["spec"]["template"]["spec"]["containers"][0]
    allowed = one("ConfigMap", "modelgate-config")["data"]["ALLOWED_HOSTS"].split(",")
    port = {p["name"]: p["containerPort"] for p in web["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = web[probe]["httpGet"]
        assert get["path"] == reverse("healthz") and port[get["port"]] == 8000
        assert {h["name"]: h["value"] for h in get["httpHeaders"]}["Host"] in allowed
    assert web["command"][:2] == ["gunicorn", "console.wsgi"] and "0.0.0.0:8000" in web["command"]
    service = one("Service", "modelgate-web")
    assert service["spec"]["selector"] == one("Deployment", "modelgate-web")["spec"]["selector"]["matchLabels"]
    ingress = one("Ingress", "modelgate")["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert ingress["name"] == "modelgate-web" and ingress["port"]["name"] == service["spec"]["ports"][0]["name"]


def test_beat_runs_alone_even_during_an_upgrade():
    beat = one("Deployment", "modelgate-beat")["spec"]
    assert beat["replicas"] == 1 and beat["strategy"] == {"type": "Recreate"}
    assert beat["template"]["spec"]["containers"][0]["command"][:4] == ["celery", "-A", "console", "beat"]


def test_the_worker_consumes_the_queues_settings_route_to():
    helpers, _ = read_variables()
    command = one("Deployment", "modelgate-worker")["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:4] == ["celery", "-A", "console", "worker"]
    assert command[command.index("-Q") + 1].split(",") == [helpers["CELERY_DEFAULT_QUEUE"], helpers["DEPLOY_QUEUE"]]


def test_migrations_run_in_the_job_and_new_pods_wait_for_them():
    from django.core.management import get_commands

    migrate = one("Job", "modelgate-migrate")["spec"]["template"]["spec"]["containers"][0]["command"]
    assert migrate == ["python", "manage.py", "migrate", "--noinput"] and "migrate" in get_commands()
    for name in ("modelgate-web", "modelgate-worker"):
        (wait,) = pod_specs()[name]["initContainers"]
        assert "manage.py migrate --check" in wait["command"][-1]


def test_settings_come_from_variables_modelgate_reads_and_secrets_from_files():
    config = one("ConfigMap", "modelgate-config")["data"]
    assert all(is_read_by_modelgate(key) for key in config), [k for k in config if not is_read_by_modelgate(k)]
    assert not {"SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL"} & set(config)
    secret_keys = set(one("Secret", "modelgate-secrets")["stringData"])
    for name, spec in pod_specs().items():
        for container in containers(spec):
            env = {e["name"]: e["value"] for e in container.get("env", [])}
            assert all(is_read_by_modelgate(key) for key in env), (name, env)
            mounts = {v["mountPath"]: v["name"] for v in container["volumeMounts"]}
            for key, path in env.items():
                if key.endswith("_FILE"):
                    directory, file = path.rsplit("/", 1)
                    assert file in secret_keys and mounts[directory] == "secrets", (name, key)
            assert container["envFrom"] == [{"configMapRef": {"name": "modelgate-config"}}]


def test_the_secret_example_is_plainly_fake():
    values = one("Secret", "modelgate-secrets")["stringData"].values()
    assert all("EXAMPLE" in value or "example" in value for value in values)


# --- RBAC: exactly what the deployer calls -------------------------------------------------


def grants(role: dict) -> set[tuple[str, str, str]]:
    """(apiGroup, resource[/subresource], verb) for every combination a Role's rules allow."""
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def rbac_requests(calls, created: list[bool], namespace: str) -> set[tuple[str, str, str]]:
    """What the API server authorizes for each recorded call. A server-side apply is a PATCH,
    and when it creates the object the API server also checks "create" (apiserver's
    handlers/patch.go); the test server records the PATCH only, so `created` says which did."""
    patches = [call for call in calls if call.method == "PATCH"]
    assert len(patches) == len(created), "every PATCH is an apply that reached the test server"
    creating = {id(call) for call, made in zip(patches, created) if made}
    requests = set()
    for call in calls:
        assert f"/namespaces/{namespace}/" in call.path, f"{call.path} is outside the target namespace"
        group = call.group_version.rpartition("/")[0]  # "" for the core group's "v1"
        resource = f"{call.resource}/{call.subresource}" if call.subresource else call.resource
        requests.add((group, resource, call.verb))
        if id(call) in creating:
            requests.add((group, resource, "create"))
    return requests


@pytest.fixture
def applies(kube) -> list[bool]:
    """Whether each server-side apply the test server handles created its object."""
    outcomes = []
    original = kube.api.apply

    def apply(*args, **kwargs):
        obj, created = original(*args, **kwargs)
        outcomes.append(created)
        return obj, created

    kube.api.apply = apply
    return outcomes


def _role(name: str) -> dict:
    return one("Role", name)


def _serving_target(namespace: str) -> m.Target:
    return m.Target(
        **{**TARGET.__dict__, "namespace": namespace, "autoscaling": m.Autoscaling(min_replicas=1, max_replicas=2)}
    )


# Everything the backend offers; a new public method may call the API differently, so adding one
# means adding it to the flow below (and perhaps a verb to the Role).
BACKEND_VERBS = {
    "apply",
    "read",
    "delete",
    "wait_for_rollout",
    "serving_pods",
    "proxy",
    "deployment_health",
    "deployment_replicas",
}


def test_the_flow_below_exercises_every_method_of_the_backend():
    public = {
        name for name in vars(KubernetesApi) if not name.startswith("_") and callable(getattr(KubernetesApi, name))
    }
    assert public - {"close"} == BACKEND_VERBS


def test_the_deployer_role_allows_exactly_what_a_rollout_calls(kube, kubeconfig, applies):
    """The worker's Role: apply (with an autoscaler), follow the rollout through a 410 and a
    re-list, find the serving pods, ask TF Serving for the version's status and a prediction
    through the pod proxy, read the objects back (drift), scrape the replicas' metrics, look
    at the health, delete; and the same objects with an HTTPRoute for a target with a Gateway."""
    role = _role("modelgate-deployer")
    namespace = role["metadata"]["namespace"]
    objects = rendered(1, _serving_target(namespace))
    name = next(o["metadata"]["name"] for o in objects if o["kind"] == "Deployment")
    with KubernetesApi(namespace=namespace, kubeconfig=str(kubeconfig), request_timeout=10) as backend:
        backend.apply(objects)
        kube.inject_watch_410()  # the watch expires once: list again, then watch from the list
        backend.wait_for_rollout(name, timeout=60)
        (pod,) = backend.serving_pods(name, version=1)
        assert backend.proxy(pod, "GET", "v1/models/iris/versions/1")[0] == 200
        assert backend.proxy(pod, "POST", "v1/models/iris/labels/staging:predict", {"instances": [ROW]})[0] == 200
        assert all(backend.read(objects))
        replicas = backend.deployment_replicas(name)  # the metrics scraper, every 10 s
        assert replicas["serving"] == [pod]
        assert backend.proxy(pod, "GET", tfserving.METRICS_PATH)[0] == 200
        assert backend.deployment_health(name)["ready"] == 1
        backend.delete(objects)
        # A target with a Gateway: its HTTPRoute is applied, read back and deleted too.
        kube.install_gateway_api()
        routed = rendered(1, m.Target(**{**_serving_target(namespace).__dict__, "gateway": m.Gateway("edge")}))
        backend.apply(routed)
        assert all(backend.read(routed))
        backend.delete(routed)

    requests = rbac_requests(kube.calls, applies, namespace)
    allowed = grants(role)
    assert requests - allowed == set(), "calls the Role does not allow"
    assert allowed - requests == set(), "verbs the Role grants but no call uses"


def test_the_console_role_allows_exactly_what_the_health_panel_calls(kube, kubeconfig, applies):
    """The web pods' Role: a deployment page reads its replicas' health, nothing else."""
    role = _role("modelgate-health-reader")
    namespace = role["metadata"]["namespace"]
    objects = rendered(1, _serving_target(namespace))
    name = next(o["metadata"]["name"] for o in objects if o["kind"] == "Deployment")
    with KubernetesApi(namespace=namespace, kubeconfig=str(kubeconfig), request_timeout=10) as worker:
        worker.apply(objects)
        worker.wait_for_rollout(name, timeout=60)
    already = len(kube.calls)
    with KubernetesApi(namespace=namespace, kubeconfig=str(kubeconfig), request_timeout=10) as console:
        assert console.deployment_health(name)["ready"] == 1

    requests = rbac_requests(kube.calls[already:], [], namespace)
    assert requests == grants(role)
