"""TF Serving manifests: pure functions, each rendered object valid against the official
Kubernetes schemas (kubernetes-validate, strict mode, pinned minor version)."""

import kubernetes_validate
import pytest

from deployer import manifests as m

K8S_VERSION = "1.33.0"

TARGET = m.Target(
    namespace="ml-prod",
    image="tensorflow/serving:2.19.0",
    fetcher_image="ghcr.io/acme/mlflow:3.5",
    mlflow_tracking_uri="http://mlflow:5000",
    replicas=3,
    node_selector={"pool": "inference"},
    tolerations=({"key": "gpu", "operator": "Exists", "effect": "NoSchedule"},),
    extra_labels={"team": "search ranking"},
)
RELEASE = m.Release(
    model="iris-classifier", version=2, environment="production", rollout_id=41, savedmodel_path="tf2model"
)


def _by_kind(objects):
    return {o["kind"]: o for o in objects}


@pytest.mark.parametrize("target", [TARGET, m.Target(**{**TARGET.__dict__, "autoscaling": m.Autoscaling(2, 8)})])
def test_every_object_validates_against_the_kubernetes_schemas(target):
    objects = m.render(target, RELEASE)
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    assert [o["kind"] for o in objects][:3] == ["ConfigMap", "Service", "Deployment"]


def test_a_typo_in_a_manifest_would_fail_validation():
    deployment = _by_kind(m.render(TARGET, RELEASE))["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_tf_serving_runs_with_the_config_files_and_both_ports():
    container = _by_kind(m.render(TARGET, RELEASE))["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:4] == [
        "--port=8500",
        "--rest_api_port=8501",
        "--model_config_file=/config/models.config",
        "--monitoring_config_file=/config/monitoring.config",
    ]
    assert {p["containerPort"] for p in container["ports"]} == {8500, 8501}
    assert container["livenessProbe"]["tcpSocket"]["port"] == 8500


def test_readiness_waits_for_the_version_to_be_available_not_just_a_200():
    container = _by_kind(m.render(TARGET, RELEASE))["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    script = container["readinessProbe"]["exec"]["command"][-1]
    assert "/v1/models/iris-classifier/versions/2" in script and "AVAILABLE" in script
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 600


def test_models_config_serves_exactly_this_version_with_an_environment_label():
    config = _by_kind(m.render(TARGET, RELEASE))["ConfigMap"]["data"]
    assert 'name: "iris-classifier"' in config["models.config"]
    assert 'base_path: "/models/iris-classifier"' in config["models.config"]
    assert "model_version_policy { specific { versions: 2 } }" in config["models.config"]
    assert 'version_labels { key: "production" value: 2 }' in config["models.config"]
    assert 'path: "/monitoring/prometheus/metrics"' in config["monitoring.config"]


def test_labels_and_annotations_carry_model_version_environment_and_rollout():
    deployment = _by_kind(m.render(TARGET, RELEASE))["Deployment"]
    labels, annotations = deployment["metadata"]["labels"], deployment["metadata"]["annotations"]
    assert (labels["modelgate.io/model"], labels["modelgate.io/version"], labels["modelgate.io/environment"]) == (
        "iris-classifier",
        "2",
        "production",
    )
    assert annotations["modelgate.io/rollout-id"] == "41"
    assert labels["team"] == "search-ranking"  # made a valid label value
    # The selector must not change between versions: a Deployment's selector is immutable.
    selector = deployment["spec"]["selector"]["matchLabels"]
    other = m.deployment(TARGET, m.Release(**{**RELEASE.__dict__, "version": 3}))
    assert other["spec"]["selector"]["matchLabels"] == selector
    assert "modelgate.io/version" not in selector


def test_each_version_has_its_own_config_map_so_old_pods_keep_theirs():
    v2 = _by_kind(m.render(TARGET, RELEASE))
    v3 = _by_kind(m.render(TARGET, m.Release(**{**RELEASE.__dict__, "version": 3})))
    assert v2["ConfigMap"]["metadata"]["name"] != v3["ConfigMap"]["metadata"]["name"]
    volumes = {v["name"]: v for v in v3["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == v3["ConfigMap"]["metadata"]["name"]


def test_the_init_container_lays_the_version_out_atomically():
    init = _by_kind(m.render(TARGET, RELEASE))["Deployment"]["spec"]["template"]["spec"]["initContainers"][0]
    script = init["command"][-1]
    assert "iris-classifier 2 tf2model" in script  # the version it downloads
    assert script.index("/models/iris-classifier/.incoming-2") < script.index(
        "mv /models/iris-classifier/.incoming-2 /models/iris-classifier/2"
    )
    assert "get_model_version_download_uri" in script and "tf2model" in script
    assert {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow:5000"} in init["env"]


def test_replicas_are_left_to_the_autoscaler_when_there_is_one():
    plain = _by_kind(m.render(TARGET, RELEASE))["Deployment"]
    scaled = _by_kind(m.render(m.Target(**{**TARGET.__dict__, "autoscaling": m.Autoscaling(2, 8)}), RELEASE))
    assert plain["spec"]["replicas"] == 3
    assert "replicas" not in scaled["Deployment"]["spec"]
    assert scaled["HorizontalPodAutoscaler"]["spec"]["maxReplicas"] == 8


@pytest.mark.parametrize(
    "image, words",
    [
        ("tensorflow/serving", "no tag"),
        ("tensorflow/serving:latest", "latest"),
    ],
)
def test_unpinned_images_are_refused(image, words):
    with pytest.raises(m.ManifestError, match=words):
        m.render(m.Target(**{**TARGET.__dict__, "image": image}), RELEASE)


@pytest.mark.parametrize(
    "model, environment",
    [
        ("iris-classifier", "production"),
        ("Fraud.Detector_v2", "prod"),
        ("x" * 120, "production"),
    ],
)
def test_resource_names_are_valid_dns_labels_and_distinct(model, environment):
    name = m.resource_name(model, environment)
    assert len(name) <= 63 and name == name.lower() and name[0].isalnum() and name[-1].isalnum()
    assert m.resource_name(model + "2", environment) != name


def _pod(target=TARGET):
    return _by_kind(m.render(target, RELEASE))["Deployment"]["spec"]["template"]["spec"]


def test_both_containers_run_unprivileged_with_a_read_only_root_and_write_only_to_empty_dirs():
    """What the restricted Pod Security Standard asks (pod-security-admission policy/check_*.go)."""
    pod = _pod()
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    volumes = {v["name"]: v for v in pod["volumes"]}
    for container in pod["initContainers"] + pod["containers"]:
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        writable = {
            mount["mountPath"]: mount["name"] for mount in container["volumeMounts"] if not mount.get("readOnly")
        }
        assert all("emptyDir" in volumes[name] for name in writable.values()), container["name"]
        assert "/tmp" in writable, container["name"]
    fetch, serving = pod["initContainers"][0], pod["containers"][0]
    assert "/models" in {m_["mountPath"] for m_ in fetch["volumeMounts"] if not m_.get("readOnly")}
    assert {"name": "HOME", "value": "/tmp"} in fetch["env"]  # MLflow's caches land on the writable volume
    assert {m_["mountPath"] for m_ in serving["volumeMounts"] if m_.get("readOnly")} == {"/models", "/config"}


def test_a_privileged_target_keeps_the_images_own_user_and_a_bad_level_is_refused():
    pod = _pod(m.Target(**{**TARGET.__dict__, "pod_security_level": "privileged"}))
    assert "securityContext" not in pod
    assert all("securityContext" not in c for c in pod["initContainers"] + pod["containers"])
    assert "securityContext" in _pod(m.Target(**{**TARGET.__dict__, "pod_security_level": "baseline"}))
    with pytest.raises(m.ManifestError, match="'lenient' is none of privileged, baseline, restricted"):
        m.render(m.Target(**{**TARGET.__dict__, "pod_security_level": "lenient"}), RELEASE)
