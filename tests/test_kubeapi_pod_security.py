"""The test API server enforces what a real one does on the way to a pod: PodSecurity admission
(the Pod Security Standards' baseline and restricted levels, from the namespace's labels) and
server-side apply's schema check, answered with the real status codes and wording.

Sources (kubernetes/kubernetes), pinned in tests/kubeapi/podsecurity.py and schema.py:
- staging/src/k8s.io/pod-security-admission/policy/check_allowPrivilegeEscalation.go:60-80,
  check_capabilities_restricted.go:72-129, check_runAsNonRoot.go:61-133,
  check_seccompProfile_restricted.go:62-137: the four details of the message below;
- .../pod-security-admission/policy/checks.go (AggregateCheckResult.ForbiddenDetail): "reason (detail), ...";
- .../pod-security-admission/admission/admission.go EvaluatePod: `violates PodSecurity %q: %s` for a
  pod (enforce), `would violate PodSecurity %q: %s` as a warning for a pod controller (warn mode);
  admission/response.go forbiddenResponse: apierrors.NewForbidden, `pods "<name>" is forbidden: ...`;
- pkg/controller/controller_utils.go createPods: Warning event FailedCreate "Error creating: <err>";
- pkg/controller/replicaset/replica_set_utils.go:109-121 calculateStatus: ReplicaFailure True,
  reason FailedCreate, message the error; pkg/controller/deployment/progress.go getReplicaFailures:
  copied onto the Deployment;
- k8s.io/apimachinery/pkg/util/managedfields/internal/structuredmerge.go Apply + objectGVKNN, and
  staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go applyPatcher (the error is returned
  unwrapped, so ErrorToAPIStatus answers 500 with no reason).
"""

import json
import urllib.error
import urllib.request

import pytest
from kubernetes import config

from deployer import manifests as m
from tests.kubeapi import podsecurity
from tests.kubeapi.fixtures import (  # noqa: F401 - fixtures
    NAME,
    NAMESPACE,
    TARGET,
    fetch_model,
    fetched,
    kube,
    kubeconfig,
    rendered,
    savedmodels,
)
from tests.test_kubeapi_server import Raw, apply_all, collection, pods, rolled_out

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
PRIVILEGED_TARGET = m.Target(**{**TARGET.__dict__, "pod_security_level": "privileged"})
BOTH = '"fetch-model", "tensorflow-serving"'
# The message a v1.28+ kube-apiserver gives for the TF Serving pod as rendered before it was hardened
# (no securityContext at all), the four restricted checks in their registration order.
FORBIDDEN_DETAIL = (
    f"allowPrivilegeEscalation != false (containers {BOTH} must set securityContext.allowPrivilegeEscalation=false), "
    f'unrestricted capabilities (containers {BOTH} must set securityContext.capabilities.drop=["ALL"]), '
    f"runAsNonRoot != true (pod or containers {BOTH} must set securityContext.runAsNonRoot=true), "
    f"seccompProfile (pod or containers {BOTH} must set securityContext.seccompProfile.type to "
    '"RuntimeDefault" or "Localhost")'
)


@pytest.fixture
def raw(kubeconfig):
    api_client = config.new_client_from_config(config_file=str(kubeconfig), persist_config=False)
    yield Raw(api_client)
    api_client.close()


def _events(kube, kind: str, reason: str) -> list[dict]:
    return [e for e in kube.list("events", NAMESPACE) if e["involvedObject"]["kind"] == kind and e["reason"] == reason]


def _condition(kube, kind: str, name: str, kind_of_condition: str) -> dict | None:
    obj = kube.get(kind, NAMESPACE, name) or {}
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind_of_condition), None)


# --- the checks themselves ---


@pytest.mark.parametrize(
    "target",
    [
        TARGET,
        m.Target(**{**TARGET.__dict__, "autoscaling": m.Autoscaling(2, 4), "node_selector": {"pool": "cpu"}}),
        m.Target(**{**TARGET.__dict__, "pod_security_level": "baseline"}),
    ],
    ids=["restricted", "autoscaled", "baseline"],
)
def test_every_rendered_tf_serving_pod_meets_the_restricted_standard(target):
    template = rendered(1, target)[2]["spec"]["template"]["spec"]
    assert podsecurity.evaluate("restricted", template) == ""
    assert podsecurity.evaluate("baseline", template) == ""


def test_a_pod_with_no_security_context_breaks_exactly_the_four_restricted_rules():
    template = rendered(1, PRIVILEGED_TARGET)[2]["spec"]["template"]["spec"]
    assert "securityContext" not in template
    assert podsecurity.evaluate("restricted", template) == FORBIDDEN_DETAIL
    assert podsecurity.evaluate("baseline", template) == ""  # nothing privileged about it
    assert podsecurity.evaluate("privileged", template) == ""


def test_baseline_forbids_host_namespaces_privileged_containers_and_root_explicitly_only_in_restricted():
    spec = {
        "hostNetwork": True,
        "hostPID": True,
        "containers": [{"name": "a", "image": "i", "securityContext": {"privileged": True, "runAsUser": 0}}],
    }
    assert podsecurity.evaluate("baseline", spec) == (
        "host namespaces (hostNetwork, hostPID), "  # check_hostNamespaces.go: sorted names, no "=true"
        'privileged (container "a" must not set securityContext.privileged=true)'
    )
    assert 'runAsUser=0 (container "a" must not set runAsUser=0)' in podsecurity.evaluate("restricted", spec)


def test_explicit_bad_values_are_named_before_missing_ones():
    """check_runAsNonRoot.go: an explicit runAsNonRoot=false is reported as such; check_seccompProfile_restricted.go
    quotes the bad profile type."""
    spec = {
        "securityContext": {"runAsNonRoot": False, "seccompProfile": {"type": "Unconfined"}},
        "containers": [{"name": "a", "image": "i"}],
    }
    detail = podsecurity.evaluate("restricted", spec)
    assert "runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false)" in detail
    assert 'seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")' in detail


# --- enforce: the ReplicaSet controller's pod creates are refused ---


def test_in_a_restricted_namespace_a_hardened_pod_is_admitted_and_serves(raw, kube):
    kube.label_namespace(NAMESPACE, RESTRICTED)
    apply_all(raw, rendered(1))
    rolled_out(kube)
    assert pods(kube) and not _events(kube, "ReplicaSet", "FailedCreate")
    assert _condition(kube, "Deployment", NAME, "ReplicaFailure") is None


def test_a_pod_that_breaks_the_namespaces_level_is_forbidden_with_the_real_servers_words(raw, kube):
    kube.label_namespace(NAMESPACE, RESTRICTED)
    apply_all(raw, rendered(1, PRIVILEGED_TARGET))  # the Deployment itself is admitted (never enforced)

    (event,) = kube.wait_for(lambda: _events(kube, "ReplicaSet", "FailedCreate"), timeout=10)
    assert event["type"] == "Warning" and event["source"]["component"] == "replicaset-controller"
    prefix, _, rest = event["message"].partition(" is forbidden: ")
    assert prefix.startswith(f'Error creating: pods "{NAME}-') and prefix.endswith('"')
    assert rest == f'violates PodSecurity "restricted:latest": {FORBIDDEN_DETAIL}'
    replica_set = kube.list("replicasets", NAMESPACE)[0]
    rs_condition = next(c for c in replica_set["status"]["conditions"] if c["type"] == "ReplicaFailure")
    assert (rs_condition["status"], rs_condition["reason"]) == ("True", "FailedCreate")
    assert rs_condition["message"] == event["message"].removeprefix("Error creating: ")

    condition = kube.wait_for(lambda: _condition(kube, "Deployment", NAME, "ReplicaFailure"), timeout=5)
    assert (condition["status"], condition["reason"], condition["message"]) == (
        "True",
        "FailedCreate",
        rs_condition["message"],
    )
    assert not pods(kube)


def test_the_failure_clears_once_the_namespace_allows_the_pod(raw, kube):
    kube.label_namespace(NAMESPACE, RESTRICTED)
    apply_all(raw, rendered(1, PRIVILEGED_TARGET))
    kube.wait_for(lambda: _condition(kube, "Deployment", NAME, "ReplicaFailure"), timeout=10)
    kube.label_namespace(NAMESPACE, {"pod-security.kubernetes.io/enforce": "baseline"})
    rolled_out(kube)
    kube.wait_for(lambda: _condition(kube, "Deployment", NAME, "ReplicaFailure") is None, timeout=5)


# --- warn: a Deployment is never refused, but the client hears about it ---


def _apply_raw(kube, obj: dict):
    """One apply over plain HTTP, to read the response headers the Python client drops."""
    request = urllib.request.Request(
        f"{kube.url}{collection(obj['kind'])}/{obj['metadata']['name']}?fieldManager=modelgate&force=true",
        data=json.dumps(obj).encode(),
        method="PATCH",
        headers={"Authorization": f"Bearer {kube.token}", "Content-Type": "application/apply-patch+yaml"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers, json.loads(answer.read())
    except urllib.error.HTTPError as answer:
        return answer.code, answer.headers, json.loads(answer.read())


def test_a_deployment_gets_the_warn_levels_warning_header_and_is_stored(kube):
    kube.label_namespace(NAMESPACE, {"pod-security.kubernetes.io/warn": "restricted"})
    code, headers, _ = _apply_raw(kube, rendered(1, PRIVILEGED_TARGET)[2])
    assert code == 201
    escaped = f'would violate PodSecurity "restricted:latest": {FORBIDDEN_DETAIL}'.replace('"', '\\"')
    assert headers.get_all("Warning") == [f'299 - "{escaped}"']
    assert kube.get("Deployment", NAMESPACE, NAME) is not None


def test_no_warning_without_a_warn_label_even_where_pods_are_enforced(kube):
    """ValidatePodController evaluates the warn and audit levels only: enforce alone says nothing."""
    kube.label_namespace(NAMESPACE, RESTRICTED)
    code, headers, _ = _apply_raw(kube, rendered(1, PRIVILEGED_TARGET)[2])
    assert code == 201 and headers.get_all("Warning") is None


# --- server-side apply's schema check ---


def test_an_apply_with_an_unknown_field_answers_500_with_the_field_managers_message(kube):
    deployment = rendered(1)[2]
    deployment["spec"]["foo"] = 1
    code, _, status = _apply_raw(kube, deployment)
    assert code == 500
    assert status == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "code": 500,
        "message": f"failed to create typed patch object ({NAMESPACE}/{NAME}; apps/v1, "
        "Kind=Deployment): .spec.foo: field not declared in schema",
    }
    assert kube.get("Deployment", NAMESPACE, NAME) is None


def test_several_unknown_fields_are_listed_with_list_elements_named_by_their_key(kube):
    deployment = rendered(1)[2]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    deployment["metadata"]["lables"] = {}
    code, _, status = _apply_raw(kube, deployment)
    head, _, listed = status["message"].partition("Kind=Deployment): errors:\n")
    assert code == 500 and head == f"failed to create typed patch object ({NAMESPACE}/{NAME}; apps/v1, "
    assert sorted(listed.split("\n")) == [
        "  .metadata.lables: field not declared in schema",
        '  .spec.template.spec.containers[name="tensorflow-serving"].readinesProbe: field not declared in schema',
    ]


def test_restricted_names_a_host_path_once_as_a_restricted_volume_type():
    """check_hostPathVolumes.go is an Overlap check: at restricted, restrictedVolumes reports it."""
    spec = {
        "volumes": [{"name": "data", "hostPath": {"path": "/srv"}}],
        "containers": [{"name": "a", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}]}],
    }
    assert podsecurity.evaluate("baseline", spec) == (
        'hostPath volumes (volume "data"), hostPort (container "a" uses hostPort 8080)'
    )
    restricted = podsecurity.evaluate("restricted", spec)
    assert "hostPath volumes" not in restricted
    assert 'restricted volume types (volume "data" uses restricted volume type "hostPath")' in restricted
