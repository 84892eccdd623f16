"""Defaulting and the validation rules a Modelgate bug could trip (422 Invalid).

Defaults matter to the deployer: a live object read back is never equal to the applied one
(the server adds imagePullPolicy, clusterIP, revisionHistoryLimit...), so drift detection must
compare only the fields Modelgate set. Full OpenAPI validation is not repeated here: the
manifest tests run kubernetes-validate on every rendered object.
"""

import ipaddress
import itertools
import json
import re

from . import crds
from .status import ApiError, invalid

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_cluster_ips = (str(ipaddress.ip_address("10.96.0.10") + n) for n in itertools.count())


def validate(resource, obj: dict, old: dict | None) -> None:
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    causes = _meta_causes(resource, meta)
    checker = {
        "Deployment": _deployment,
        "Service": _service,
        "ConfigMap": _config_map,
        "HorizontalPodAutoscaler": _autoscaler,
        "HTTPRoute": _http_route,
    }.get(resource.kind)
    if checker:
        causes += checker(obj, old)
    if causes:
        raise invalid(resource, name, causes)


def _meta_causes(resource, meta: dict) -> list:
    name = meta.get("name", "")
    causes = []
    if resource.kind == "Service" and not (_DNS1035.match(name) and len(name) <= 63):
        causes.append(
            (
                "metadata.name",
                f'Invalid value: "{name}": a DNS-1035 label must consist of lower case '
                "alphanumeric characters or '-', start with an alphabetic character, and "
                "end with an alphanumeric character",
            )
        )
    elif not (_SUBDOMAIN.match(name) and len(name) <= 253):
        causes.append(
            (
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of '
                "lower case alphanumeric characters, '-' or '.', and must start and end "
                "with an alphanumeric character",
            )
        )
    for key, value in (meta.get("labels") or {}).items():
        causes += _label_causes("metadata.labels", key, value)
    for key in meta.get("annotations") or {}:
        if not _qualified_name(key):
            causes.append(
                (
                    "metadata.annotations",
                    f"Invalid value: \"{key}\": name part must consist of alphanumeric characters, '-', '_' or '.'",
                )
            )
    return causes


def _qualified_name(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    return bool(_LABEL_NAME.match(name)) and len(name) <= 63 and (not prefix or bool(_SUBDOMAIN.match(prefix)))


def _label_causes(field: str, key: str, value) -> list:
    causes = []
    if not _qualified_name(key):
        causes.append(
            (
                field,
                f'Invalid value: "{key}": name part must consist of alphanumeric characters, '
                "'-', '_' or '.', and must start and end with an alphanumeric character",
            )
        )
    if not isinstance(value, str) or (value and not (_LABEL_NAME.match(value) and len(value) <= 63)):
        causes.append(
            (
                field,
                f'Invalid value: "{value}": a valid label must be an empty string or consist of '
                "alphanumeric characters, '-', '_' or '.', and must start and end with an "
                "alphanumeric character",
            )
        )
    return causes


def _go_map(labels: dict) -> str:
    return "map[string]string{" + ", ".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in sorted(labels.items())) + "}"


def _deployment(obj: dict, old: dict | None) -> list:
    spec = obj.get("spec") or {}
    causes = []
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not selector and not (spec.get("selector") or {}).get("matchExpressions"):
        causes.append(("spec.selector", "Required value"))
    elif any(labels.get(k) != v for k, v in selector.items()):
        causes.append(
            (
                "spec.template.metadata.labels",
                f"Invalid value: {_go_map(labels)}: `selector` does not match template `labels`",
            )
        )
    if old is not None and (old.get("spec") or {}).get("selector") != spec.get("selector"):
        causes.append(("spec.selector", f"Invalid value: {json.dumps(spec.get('selector'))}: field is immutable"))
    if (spec.get("replicas") or 0) < 0:
        causes.append(("spec.replicas", f"Invalid value: {spec['replicas']}: must be greater than or equal to 0"))
    containers = (template.get("spec") or {}).get("containers") or []
    if not containers:
        causes.append(("spec.template.spec.containers", "Required value"))
    for kind in ("initContainers", "containers"):
        for n, container in enumerate((template.get("spec") or {}).get(kind) or []):
            for required in ("name", "image"):
                if not container.get(required):
                    causes.append((f"spec.template.spec.{kind}[{n}].{required}", "Required value"))
    return causes


def _service(obj: dict, old: dict | None) -> list:
    spec = obj.get("spec") or {}
    causes = []
    if spec.get("type", "ClusterIP") == "ClusterIP" and spec.get("clusterIP") != "None" and not spec.get("ports"):
        causes.append(("spec.ports", "Required value"))
    for n, port in enumerate(spec.get("ports") or []):
        if not 1 <= int(port.get("port") or 0) <= 65535:
            causes.append(
                (f"spec.ports[{n}].port", f"Invalid value: {port.get('port')}: must be between 1 and 65535, inclusive")
            )
    if (
        old is not None
        and (old.get("spec") or {}).get("clusterIP") not in (None, spec.get("clusterIP"))
        and spec.get("clusterIP") is not None
    ):
        causes.append(("spec.clusterIP", f'Invalid value: "{spec.get("clusterIP")}": field is immutable'))
    return causes


def _config_map(obj: dict, old: dict | None) -> list:
    return [
        (
            f"data[{key}]",
            f"Invalid value: \"{key}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
        )
        for key in (obj.get("data") or {})
        if not _CONFIG_KEY.match(key)
    ]


def _autoscaler(obj: dict, old: dict | None) -> list:
    spec = obj.get("spec") or {}
    causes = []
    maximum, minimum = spec.get("maxReplicas") or 0, spec.get("minReplicas", 1)
    if maximum < 1:
        causes.append(("spec.maxReplicas", f"Invalid value: {maximum}: must be greater than or equal to 1"))
    elif minimum > maximum:
        causes.append(("spec.maxReplicas", f"Invalid value: {maximum}: must be greater than or equal to `minReplicas`"))
    if not (spec.get("scaleTargetRef") or {}).get("name"):
        causes.append(("spec.scaleTargetRef.name", "Required value"))
    return causes


def _http_route(obj: dict, old: dict | None) -> list:
    """The CRD's schema (its `#/...` path in the message, as the API server's structural schema
    validation words it) and the CEL rule on backendRefs: a Service needs a port."""
    causes = []
    for error in crds.errors(obj):  # .status too: the status subresource's writes are checked
        if error.validator == "additionalProperties":
            continue  # apply refused those already (schema.py); a create or update drops them
        field = "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in error.absolute_path)
        field = field.lstrip(".") or "<root>"
        causes.append((field, f"Invalid value: {json.dumps(error.instance)}: {error.message}"))
    for n, rule in enumerate((obj.get("spec") or {}).get("rules") or []):
        for k, ref in enumerate(rule.get("backendRefs") or []):
            if ref.get("group", "") == "" and ref.get("kind", "Service") == "Service" and "port" not in ref:
                causes.append(
                    (
                        f"spec.rules[{n}].backendRefs[{k}]",
                        'Invalid value: "object": Must have port for Service reference',
                    )
                )
    return causes


# --- defaults ---


def apply_defaults(resource, obj: dict) -> None:
    defaulter = {
        "Deployment": _default_deployment,
        "Service": _default_service,
        "HTTPRoute": _default_http_route,
    }.get(resource.kind)
    if defaulter:
        defaulter(obj.setdefault("spec", {}))


def _default_http_route(spec: dict) -> None:
    """The HTTPRoute CRD's `default`s (v1.0.0 standard channel): a rule matches every path, a
    parentRef is a Gateway, a backendRef a Service of weight 1."""
    for parent in spec.get("parentRefs") or []:
        parent.setdefault("group", "gateway.networking.k8s.io")
        parent.setdefault("kind", "Gateway")
    spec.setdefault("rules", [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}])
    for rule in spec["rules"]:
        rule.setdefault("matches", [{"path": {"type": "PathPrefix", "value": "/"}}])
        for match in rule["matches"]:
            path = match.setdefault("path", {"type": "PathPrefix", "value": "/"})
            path.setdefault("type", "PathPrefix")
            path.setdefault("value", "/")
        for ref in rule.get("backendRefs") or []:
            ref.setdefault("group", "")
            ref.setdefault("kind", "Service")
            ref.setdefault("weight", 1)


def _default_deployment(spec: dict) -> None:
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        strategy.setdefault("type", "RollingUpdate")
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    pod = spec.setdefault("template", {}).setdefault("spec", {})
    for key, value in (
        ("restartPolicy", "Always"),
        ("terminationGracePeriodSeconds", 30),
        ("dnsPolicy", "ClusterFirst"),
        ("schedulerName", "default-scheduler"),
        ("securityContext", {}),
    ):
        pod.setdefault(key, value)
    for container in (pod.get("initContainers") or []) + (pod.get("containers") or []):
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        image = container.get("image") or ""
        container.setdefault(
            "imagePullPolicy",
            "Always" if image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1] else "IfNotPresent",
        )
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            if isinstance(container.get(probe), dict):
                for key, value in (
                    ("timeoutSeconds", 1),
                    ("periodSeconds", 10),
                    ("successThreshold", 1),
                    ("failureThreshold", 3),
                ):
                    container[probe].setdefault(key, value)
    for volume in pod.get("volumes") or []:
        if isinstance(volume.get("configMap"), dict):
            volume["configMap"].setdefault("defaultMode", 420)


def _default_service(spec: dict) -> None:
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("ipFamilies", ["IPv4"])
    if "clusterIP" not in spec:
        spec["clusterIP"] = next(_cluster_ips)
    spec.setdefault("clusterIPs", [spec["clusterIP"]])
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))


def check_identity(resource, obj: dict, *, name: str | None, namespace: str) -> None:
    """400s for a body that does not fit the URL, as the real server answers them."""
    if not isinstance(obj, dict):
        raise ApiError(400, "the body of the request must be a JSON object")
    expected = f"{resource.group_version}"
    if obj.get("apiVersion") != expected or obj.get("kind") != resource.kind:
        raise ApiError(
            400,
            f"the API version in the data ({obj.get('apiVersion')}) and kind ({obj.get('kind')}) "
            f"do not match the endpoint ({expected}, {resource.kind})",
        )
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        if name is None:
            raise invalid(resource, "", [("metadata.name", "Required value: name or generateName is required")])
        obj.setdefault("metadata", {})["name"] = name
    elif name is not None and meta["name"] != name:
        raise ApiError(400, f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
    if obj["metadata"].get("namespace", namespace) != namespace:
        raise ApiError(400, "the namespace of the provided object does not match the namespace sent on the request")
    obj["metadata"]["namespace"] = namespace
