"""TensorFlow Serving manifests as pure functions of a target and a release.

Rendered objects are plain dicts, ready for server-side apply. Nothing here talks to a
cluster, so every manifest can be validated against the Kubernetes JSON schemas in a test.

Why the probes look the way they do:
- readiness: TF Serving's status endpoint answers 200 while a version is still LOADING, so
  an httpGet probe would send traffic too early. The probe reads the body and passes only
  when the released version's state is AVAILABLE (bash's /dev/tcp: the serving image has
  bash but no curl).
- startup: the same check, allowed up to ``startup_seconds`` so large models can load.
- liveness: a TCP check on the gRPC port; TF Serving implements no gRPC health service.

Why the security context looks the way it does: a namespace enforcing the "restricted" Pod
Security Standard refuses any pod that may run as root, escalate privileges, keep a capability
or run without a seccomp profile. Both containers run as an unprivileged user with a read-only
root filesystem; what they must write goes to emptyDir volumes (the model directory, /tmp).
TF Serving needs nothing else: it reads the model and its config and listens on unprivileged
ports. A target whose namespace enforces "privileged" may opt out (``pod_security_level``), for
an image that insists on running as root.
"""

import hashlib
import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from deployer.tfserving import GRPC_PORT, METRICS_PATH, REST_PORT, model_path

MODEL_ROOT = "/models"
CONFIG_DIR = "/config"
MANAGER = "modelgate"
TMP_DIR = "/tmp"  # noqa: S108 - an emptyDir mounted in the pod, not this machine's /tmp
# An unprivileged uid and gid (not in the serving image's /etc/passwd, which TF Serving ignores);
# fsGroup makes the emptyDir volumes writable for it.
RUN_AS = 1000
POD_SECURITY_LEVELS = ("privileged", "baseline", "restricted")


@dataclass(frozen=True)
class Autoscaling:
    min_replicas: int
    max_replicas: int
    cpu_utilization: int = 70


@dataclass(frozen=True)
class Target:
    """Where and how an environment's models run."""

    namespace: str
    image: str  # a pinned TF Serving image, e.g. tensorflow/serving:2.19.0
    fetcher_image: str  # an image with MLflow installed, runs the init container
    mlflow_tracking_uri: str
    replicas: int = 1
    cpu_request: str = "250m"
    cpu_limit: str = "1"
    memory_request: str = "512Mi"
    memory_limit: str = "1Gi"
    node_selector: dict = field(default_factory=dict)
    tolerations: tuple = ()
    extra_labels: dict = field(default_factory=dict)
    autoscaling: Autoscaling | None = None
    startup_seconds: int = 600
    progress_deadline_seconds: int = 600
    # The Pod Security Standard the namespace enforces: "restricted" and "baseline" render the
    # hardened security context below; "privileged" leaves the image's defaults.
    pod_security_level: str = "restricted"


@dataclass(frozen=True)
class Release:
    """One version of one model going to one environment."""

    model: str
    version: int
    environment: str
    rollout_id: int
    savedmodel_path: str  # where the SavedModel sits inside the version's artifacts
    # "stable" (what the environment's address serves) or "canary" (a new version taking a
    # share of that traffic beside it; its objects and calls are the canary's own).
    track: str = "stable"


class ManifestError(ValueError):
    pass


def _dns_label(text: str, limit: int = 63) -> str:
    """A DNS-1123 label: lowercase alphanumerics and '-', at most ``limit`` characters.
    When names must be cut or changed, a short hash keeps them distinct."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "x"
    if cleaned == text and len(cleaned) <= limit:
        return cleaned
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{cleaned[: limit - 9].rstrip('-')}-{digest}"


def _label_value(text: str) -> str:
    """A label value: at most 63 characters of [A-Za-z0-9._-], starting and ending alphanumeric."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    return cleaned[:63].rstrip("-._")


def resource_name(model: str, environment: str) -> str:
    return _dns_label(f"tfs-{model}-{environment}")


def _check(target: Target, release: Release) -> None:
    tag = target.image.rsplit("/", 1)[-1]
    if ":" not in tag and "@" not in target.image:
        raise ManifestError(f"Image {target.image!r} has no tag: pin a version, e.g. tensorflow/serving:2.19.0.")
    if tag.endswith(":latest"):
        raise ManifestError(f"Image {target.image!r} uses 'latest': pin a version so rollouts are repeatable.")
    if release.version < 1:
        raise ManifestError("A TF Serving version must be a positive integer.")
    if target.autoscaling and target.autoscaling.min_replicas > target.autoscaling.max_replicas:
        raise ManifestError("Autoscaling min_replicas is above max_replicas.")
    if target.pod_security_level not in POD_SECURITY_LEVELS:
        raise ManifestError(
            f"Pod security level {target.pod_security_level!r} is none of {', '.join(POD_SECURITY_LEVELS)}."
        )


def models_config(
    release: Release,
    *,
    model_root: str = MODEL_ROOT,
    also_serve: tuple[int, ...] = (),
    label_version: int | None = None,
) -> str:
    """TF Serving's model config (protobuf text format): serve exactly this version, and
    label it with the environment so clients can call /labels/<environment>.

    also_serve keeps other versions loaded beside it and label_version points the label
    elsewhere: the local backend uses both to switch versions without a gap, as a rolling
    update does with pods."""
    name = json.dumps(release.model)  # a quoted protobuf string
    label = json.dumps(release.environment)
    versions = " ".join(f"versions: {v}" for v in sorted({release.version, *also_serve}))
    labelled = release.version if label_version is None else label_version
    labels = f"    version_labels {{ key: {label} value: {labelled} }}\n" if labelled else ""
    return (
        "model_config_list {\n"
        "  config {\n"
        f"    name: {name}\n"
        f"    base_path: {json.dumps(f'{model_root}/{release.model}')}\n"
        '    model_platform: "tensorflow"\n'
        f"    model_version_policy {{ specific {{ {versions} }} }}\n"
        f"{labels}"
        "  }\n"
        "}\n"
    )


def monitoring_config() -> str:
    return f'prometheus_config {{\n  enable: true\n  path: "{METRICS_PATH}"\n}}\n'


def _labels(target: Target, release: Release) -> dict:
    return {
        **{k: _label_value(str(v)) for k, v in target.extra_labels.items()},
        "app.kubernetes.io/name": "tensorflow-serving",
        "app.kubernetes.io/instance": resource_name(release.model, release.environment),
        "app.kubernetes.io/managed-by": MANAGER,
        "modelgate.io/model": _label_value(release.model),
        "modelgate.io/version": str(release.version),
        "modelgate.io/environment": _label_value(release.environment),
    }


def _selector(release: Release) -> dict:
    # Only what never changes between versions: a Deployment's selector is immutable.
    return {
        "app.kubernetes.io/instance": resource_name(release.model, release.environment),
        "app.kubernetes.io/managed-by": MANAGER,
    }


def _annotations(release: Release) -> dict:
    return {
        "modelgate.io/model-name": release.model,
        "modelgate.io/rollout-id": str(release.rollout_id),
        "modelgate.io/version": str(release.version),
    }


def _meta(name: str, target: Target, release: Release) -> dict:
    return {
        "name": name,
        "namespace": target.namespace,
        "labels": _labels(target, release),
        "annotations": _annotations(release),
    }


def config_name(release: Release) -> str:
    """One ConfigMap per version: pods of the previous version keep reading their own config
    while a rollout (or a rollback) is under way."""
    return _dns_label(f"{resource_name(release.model, release.environment)}-v{release.version}")


def config_map(target: Target, release: Release) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(config_name(release), target, release),
        "data": {"models.config": models_config(release), "monitoring.config": monitoring_config()},
    }


def available_check(release: Release) -> list[str]:
    """A command that succeeds only when TF Serving reports the version AVAILABLE."""
    path = model_path(release.model, version=release.version)
    script = (
        f"exec 3<>/dev/tcp/127.0.0.1/{REST_PORT} && "
        f"printf 'GET %s HTTP/1.0\\r\\n\\r\\n' {shlex.quote(path)} >&3 && "
        'grep -q \'"state": *"AVAILABLE"\' <&3'
    )
    return ["bash", "-c", script]


# Run by the fetcher image's Python (it has MLflow, not Modelgate): the same lookup as
# deployer.export, so a version registered from models:/m-… and one registered from
# runs:/<run>/model both resolve (their artifacts are laid out differently under
# models:/<name>/<version>). It applies registry/artifact_paths.py's rules again before and
# after downloading: the SavedModel path must be relative, without '..', and no symlink in
# the artifacts (on a local store) or in what was downloaded may lead outside them.
_DOWNLOAD = """
import os, re, sys
from urllib.parse import unquote, urlsplit
import mlflow
from mlflow import artifacts

def refuse(why):
    sys.exit("refused: " + why + "; paths in a model's artifacts must stay inside its artifact location")

def inside(path, root):
    return path == root or path.startswith(root.rstrip("/") + "/")

def check_tree(root, top):
    real_root = os.path.realpath(root)
    if not inside(os.path.realpath(top), real_root):
        refuse(top + " resolves outside " + root)
    for dirpath, dirnames, filenames in os.walk(top):
        for entry in dirnames + filenames:
            path = os.path.join(dirpath, entry)
            if os.path.islink(path) and not inside(os.path.realpath(path), real_root):
                refuse(path + " is a symlink to outside the artifacts")

name, version, sub = sys.argv[1:4]
if sub not in ("", "."):
    if re.search(r"[\\x00-\\x1f\\x7f\\\\]", sub) or sub.startswith("/") or unquote(sub).startswith("/"):
        refuse("savedmodel_path " + repr(sub) + " is absolute or holds a control character")
    if ".." in sub.split("/") or ".." in unquote(sub).split("/"):
        refuse("savedmodel_path " + repr(sub) + " contains '..'")
base = mlflow.MlflowClient().get_model_version_download_uri(name, version).rstrip("/")
parts = urlsplit(base)
if parts.scheme == "file" or (not parts.scheme and base.startswith("/")):
    local = unquote(parts.path)
    check_tree(local, local)
    check_tree(local, os.path.join(local, sub))
uri = base if sub in ("", ".") else base + "/" + sub.strip("/")
path = artifacts.download_artifacts(artifact_uri=uri, dst_path="/tmp/download")
check_tree("/tmp/download", path)
print(path)
"""


def fetch_command(release: Release) -> list[str]:
    """The init container's job: download the version's SavedModel from MLflow and lay it out
    as TF Serving expects, <root>/<model>/<version>/saved_model.pb, renamed into place at the
    end so TF Serving never sees half a version."""
    final = f"{MODEL_ROOT}/{release.model}/{release.version}"
    staging = f"{MODEL_ROOT}/{release.model}/.incoming-{release.version}"
    q = shlex.quote
    script = " && ".join(
        [
            "set -e",
            f"if test -f {q(final + '/saved_model.pb')}; then exit 0; fi",
            f"python -c {q(_DOWNLOAD)} {q(release.model)} {release.version} {q(release.savedmodel_path or '.')}"
            " > /tmp/download.out",
            "src=$(tail -n 1 /tmp/download.out)",
            'test -f "$src/saved_model.pb"',
            f"mkdir -p {q(f'{MODEL_ROOT}/{release.model}')}",
            f"rm -rf {q(staging)}",
            f'cp -r "$src" {q(staging)}',
            f"mv {q(staging)} {q(final)}",
        ]
    )
    return ["sh", "-c", script]


def pod_security_context(target: Target) -> dict | None:
    """What the restricted Pod Security Standard asks of a pod (None: the image's defaults)."""
    if target.pod_security_level == "privileged":
        return None
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(target: Target) -> dict | None:
    if target.pod_security_level == "privileged":
        return None
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def deployment(target: Target, release: Release) -> dict:
    name = resource_name(release.model, release.environment)
    config_hash = hashlib.sha256((models_config(release) + monitoring_config()).encode()).hexdigest()[:16]
    resources = {
        "requests": {"cpu": target.cpu_request, "memory": target.memory_request},
        "limits": {"cpu": target.cpu_limit, "memory": target.memory_limit},
    }
    pod_spec: dict[str, Any] = {
        "initContainers": [
            {
                "name": "fetch-model",
                "image": target.fetcher_image,
                "command": fetch_command(release),
                # HOME on the writable volume: MLflow and its libraries may write caches there.
                "env": [
                    {"name": "MLFLOW_TRACKING_URI", "value": target.mlflow_tracking_uri},
                    {"name": "HOME", "value": TMP_DIR},
                ],
                "volumeMounts": [{"name": "models", "mountPath": MODEL_ROOT}, {"name": "tmp", "mountPath": TMP_DIR}],
                "resources": resources,
            }
        ],
        "containers": [
            {
                "name": "tensorflow-serving",
                "image": target.image,
                "args": [
                    f"--port={GRPC_PORT}",
                    f"--rest_api_port={REST_PORT}",
                    f"--model_config_file={CONFIG_DIR}/models.config",
                    f"--monitoring_config_file={CONFIG_DIR}/monitoring.config",
                    "--allow_version_labels_for_unavailable_models=true",
                ],
                "ports": [
                    {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
                    {"name": "http", "containerPort": REST_PORT, "protocol": "TCP"},
                ],
                "readinessProbe": {
                    "exec": {"command": available_check(release)},
                    "periodSeconds": 5,
                    "timeoutSeconds": 3,
                    "failureThreshold": 3,
                },
                "startupProbe": {
                    "exec": {"command": available_check(release)},
                    "periodSeconds": 10,
                    "timeoutSeconds": 3,
                    "failureThreshold": max(1, target.startup_seconds // 10),
                },
                "livenessProbe": {"tcpSocket": {"port": GRPC_PORT}, "periodSeconds": 10, "failureThreshold": 3},
                "resources": resources,
                "volumeMounts": [
                    {"name": "models", "mountPath": MODEL_ROOT, "readOnly": True},
                    {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                    {"name": "tmp", "mountPath": TMP_DIR},
                ],
            }
        ],
        "volumes": [
            {"name": "models", "emptyDir": {}},
            {"name": "config", "configMap": {"name": config_name(release)}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if (security := pod_security_context(target)) is not None:
        pod_spec["securityContext"] = security
        for container in pod_spec["initContainers"] + pod_spec["containers"]:
            container["securityContext"] = container_security_context(target)
    if target.node_selector:
        pod_spec["nodeSelector"] = dict(target.node_selector)
    if target.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in target.tolerations]
    spec = {
        "selector": {"matchLabels": _selector(release)},
        "progressDeadlineSeconds": target.progress_deadline_seconds,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": {
                "labels": {**_labels(target, release), **_selector(release)},
                "annotations": {
                    **_annotations(release),
                    "modelgate.io/config-hash": config_hash,
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(REST_PORT),
                    "prometheus.io/path": METRICS_PATH,
                },
            },
            "spec": pod_spec,
        },
    }
    if target.autoscaling is None:
        # With an HPA the replica count is its to set; applying ours would fight it.
        spec["replicas"] = target.replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, target, release), "spec": spec}


def service(target: Target, release: Release) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(resource_name(release.model, release.environment), target, release),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(release),
            "ports": [
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP"},
                {"name": "http", "port": REST_PORT, "targetPort": "http", "protocol": "TCP"},
            ],
        },
    }


def autoscaler(target: Target, release: Release) -> dict:
    name = resource_name(release.model, release.environment)
    scaling = target.autoscaling
    assert scaling is not None, "render() adds an autoscaler only to a target that autoscales"
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(name, target, release),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": scaling.cpu_utilization},
                    },
                }
            ],
        },
    }


def render(target: Target, release: Release) -> list[dict]:
    """Every object of a release, in the order they are applied (config before pods)."""
    _check(target, release)
    objects = [config_map(target, release), service(target, release), deployment(target, release)]
    if target.autoscaling is not None:
        objects.append(autoscaler(target, release))
    return objects
