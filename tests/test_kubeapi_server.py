"""The fake Kubernetes API server answers as a real one does, through the real `kubernetes` client.

Requests go through the client's own ApiClient (its auth and serialization, over HTTP), so what
passes here is what the client and a real cluster would agree on: Status errors, server-side
apply and its field ownership, watches, and a Deployment controller whose pods really serve.
"""

import json
import socket
import time
import urllib.error
import urllib.request

import pytest
from kubernetes import client, config

from deployer import manifests as m
from tests.kubeapi.fixtures import (  # noqa: F401 - fixtures
    BROKEN,
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

APPLY = "application/apply-patch+yaml"
PATHS = {
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "Service": "/api/v1/namespaces/{ns}/services",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "HorizontalPodAutoscaler": "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers",
    "Pod": "/api/v1/namespaces/{ns}/pods",
    "Event": "/api/v1/namespaces/{ns}/events",
    "ReplicaSet": "/apis/apps/v1/namespaces/{ns}/replicasets",
}


class Raw:
    """Requests made with the real client's ApiClient; answers as (status, JSON) instead of raising."""

    def __init__(self, api_client: client.ApiClient):
        self.api = api_client

    def request(
        self,
        method: str,
        path: str,
        body=None,
        *,
        content_type: str = "application/json",
        query: dict | None = None,
        stream: bool = False,
    ):
        request = self.api.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*request, _request_timeout=30)
        if stream:
            return response.response
        data = response.read()
        return response.status, json.loads(data) if data else None

    def apply(self, obj: dict, *, manager: str = "modelgate", force: bool = False):
        query = {"fieldManager": manager, **({"force": "true"} if force else {})}
        return self.request(
            "PATCH", f"{collection(obj['kind'])}/{obj['metadata']['name']}", obj, content_type=APPLY, query=query
        )

    def get(self, kind: str, name: str | None = None, **query):
        return self.request("GET", collection(kind) + (f"/{name}" if name else ""), query=query)

    def watch(self, kind: str, **query) -> list[dict]:
        """Every event of one watch request, read until the server ends it (timeoutSeconds)."""
        response = self.request("GET", collection(kind), query={"watch": "true", **query}, stream=True)
        assert response.headers.get("Transfer-Encoding") == "chunked"
        body = b"".join(response.stream(amt=None))
        return [json.loads(line) for line in body.splitlines() if line.strip()]


def collection(kind: str) -> str:
    return PATHS[kind].format(ns=NAMESPACE)


def config_map(name: str = "settings", data: dict | None = None, labels: dict | None = None) -> dict:
    meta = {"name": name, "namespace": NAMESPACE, **({"labels": labels} if labels else {})}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data or {}}


def managers(obj: dict) -> set:
    return {(e["manager"], e["operation"]) for e in obj["metadata"]["managedFields"] if not e.get("subresource")}


def rolled_out(kube, replicas: int = 1):
    def check():
        d = kube.get("Deployment", NAMESPACE, NAME)
        status = d and d.get("status") or {}
        return (
            d
            if (
                status.get("observedGeneration") == d["metadata"]["generation"]
                and status.get("updatedReplicas") == replicas == status.get("availableReplicas")
                and status.get("replicas") == replicas
            )
            else None
        )

    return kube.wait_for(check, timeout=30, message="the rollout")


def pods(kube, version: int | None = None) -> list[dict]:
    selector = f"app.kubernetes.io/instance={NAME}" + (f",modelgate.io/version={version}" if version else "")
    return kube.list("pods", NAMESPACE, label_selector=selector)


@pytest.fixture
def raw(kubeconfig):
    api_client = config.new_client_from_config(config_file=str(kubeconfig), persist_config=False)
    yield Raw(api_client)
    api_client.close()


def apply_all(raw: Raw, objects: list[dict]) -> list[dict]:
    answers = [raw.apply(obj) for obj in objects]
    assert all(code in (200, 201) for code, _ in answers), answers
    return [body for _, body in answers]


# --- server-side apply ---


def test_apply_creates_the_object_then_merges_another_managers_fields(raw):
    code, first = raw.apply(config_map(data={"a": "1"}))
    assert code == 201 and first["data"] == {"a": "1"}
    code, second = raw.apply(config_map(data={"b": "2"}), manager="other-tool")
    assert code == 200 and second["data"] == {"a": "1", "b": "2"}
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    assert managers(second) == {("modelgate", "Apply"), ("other-tool", "Apply")}


def test_reapplying_unchanged_manifests_writes_nothing_and_keeps_the_generation(raw, kube):
    objects = rendered(1)
    first = apply_all(raw, objects)
    rolled_out(kube)
    events_before = len(kube.store.retained())
    again = apply_all(raw, objects)
    assert [o["metadata"]["resourceVersion"] for o in again[:2]] == [
        o["metadata"]["resourceVersion"] for o in first[:2]
    ]
    assert again[2]["metadata"]["generation"] == 1
    assert not [e for e in kube.store.retained()[events_before:] if e.plural in ("configmaps", "services")]


def test_a_template_change_bumps_the_generation_and_a_label_change_does_not(raw, kube):
    deployment = rendered(1)[2]
    apply_all(raw, [deployment])
    deployment["metadata"]["labels"]["team"] = "search"
    assert raw.apply(deployment)[1]["metadata"]["generation"] == 1
    deployment["spec"]["template"]["metadata"]["annotations"]["restarted-at"] = "now"
    assert raw.apply(deployment)[1]["metadata"]["generation"] == 2


def test_fields_left_out_of_the_next_apply_are_removed(raw):
    raw.apply(config_map(data={"a": "1", "b": "2"}, labels={"tier": "gold"}))
    code, answer = raw.apply(config_map(data={"a": "1"}))
    assert code == 200 and answer["data"] == {"a": "1"} and "labels" not in answer["metadata"]
    pinned = rendered(1, m.Target(**{**TARGET.__dict__, "node_selector": {"pool": "inference"}}))[2]
    assert raw.apply(pinned)[1]["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "inference"}
    assert "nodeSelector" not in raw.apply(rendered(1)[2])[1]["spec"]["template"]["spec"]


def test_a_field_only_another_manager_set_survives_the_next_apply(raw, kube):
    raw.apply(config_map(data={"a": "1"}))
    kube.edit(
        "ConfigMap", NAMESPACE, "settings", lambda cm: cm["metadata"].setdefault("labels", {}).update({"owner": "ops"})
    )
    code, answer = raw.apply(config_map(data={"a": "1"}))
    assert code == 200 and answer["metadata"]["labels"] == {"owner": "ops"}


def test_changing_a_field_another_manager_edited_is_a_conflict_naming_field_and_manager(raw, kube):
    deployment = rendered(1)[2]
    raw.apply(deployment)
    kube.edit("Deployment", NAMESPACE, NAME, lambda d: d["spec"].update(replicas=3))
    code, status = raw.apply(deployment)
    assert code == 409 and (status["kind"], status["reason"], status["code"]) == ("Status", "Conflict", 409)
    assert (
        status["message"] == 'Apply failed with 1 conflict: conflict with "kubectl-edit" using apps/v1: .spec.replicas'
    )
    assert status["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "field": ".spec.replicas",
            "message": 'conflict with "kubectl-edit" using apps/v1',
        }
    ]
    assert kube.get("Deployment", NAMESPACE, NAME)["spec"]["replicas"] == 3


def test_a_forced_apply_takes_ownership_of_the_edited_field_back(raw, kube):
    deployment = rendered(1)[2]
    raw.apply(deployment)
    kube.edit(
        "Deployment",
        NAMESPACE,
        NAME,
        lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="tensorflow/serving:2.18.0"),
    )
    code, answer = raw.apply(deployment, force=True)
    assert code == 200 and answer["spec"]["template"]["spec"]["containers"][0]["image"] == TARGET.image
    assert ("kubectl-edit", "Update") not in managers(answer)
    assert answer["metadata"]["generation"] == 3  # edited, then set back


def test_applying_the_value_another_manager_set_shares_it_without_conflict(raw, kube):
    raw.apply(config_map(data={"a": "1"}), manager="other-tool")
    code, answer = raw.apply(config_map(data={"a": "1"}))
    assert code == 200 and managers(answer) == {("modelgate", "Apply"), ("other-tool", "Apply")}


def test_an_edit_bumps_the_generation_only_for_spec_changes(raw, kube):
    raw.apply(rendered(1)[2])
    edited = kube.edit("Deployment", NAMESPACE, NAME, lambda d: d["metadata"]["annotations"].update(note="x"))
    assert edited["metadata"]["generation"] == 1
    edited = kube.edit("Deployment", NAMESPACE, NAME, lambda d: d["spec"].update(minReadySeconds=5))
    assert edited["metadata"]["generation"] == 2 and ("kubectl-edit", "Update") in managers(edited)


def test_the_server_fills_in_defaults_nobody_owns(raw):
    deployment = apply_all(raw, rendered(1))[2]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert (deployment["spec"]["revisionHistoryLimit"], container["imagePullPolicy"]) == (10, "IfNotPresent")
    service = raw.get("Service", NAME)[1]
    assert service["spec"]["clusterIP"] and service["spec"]["sessionAffinity"] == "None"


# --- errors ---


def test_requests_without_the_bearer_token_get_a_401_status(kube):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {kube.token}"}):
        request = urllib.request.Request(f"{kube.url}{collection('ConfigMap')}", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401
        assert json.loads(refused.value.read()) == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        }


def test_patch_types_other_than_apply_get_415(raw):
    raw.apply(config_map())
    code, status = raw.request(
        "PATCH",
        f"{collection('ConfigMap')}/settings",
        {"data": {"a": "1"}},
        content_type="application/merge-patch+json",
    )
    assert (code, status["reason"]) == (415, "UnsupportedMediaType")


def test_apply_without_a_field_manager_is_invalid(raw):
    code, status = raw.request("PATCH", f"{collection('ConfigMap')}/settings", config_map(), content_type=APPLY)
    assert (code, status["reason"]) == (422, "Invalid") and "fieldManager: Required value" in status["message"]


def test_errors_are_status_objects_with_the_real_codes_and_messages(raw):
    code, status = raw.get("Deployment", "absent")
    assert (code, status["reason"], status["message"]) == (404, "NotFound", 'deployments.apps "absent" not found')
    assert status["details"] == {"name": "absent", "group": "apps", "kind": "deployments"}
    assert raw.request("POST", collection("ConfigMap"), config_map())[0] == 201
    code, status = raw.request("POST", collection("ConfigMap"), config_map())
    assert (code, status["reason"], status["message"]) == (409, "AlreadyExists", 'configmaps "settings" already exists')
    broken = rendered(1)[2]
    broken["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"] = "other"
    code, status = raw.apply(broken)
    assert (code, status["reason"]) == (422, "Invalid")
    assert status["message"].startswith(f'Deployment.apps "{NAME}" is invalid: spec.template.metadata.labels: ')
    assert "`selector` does not match template `labels`" in status["message"]


def test_a_deployments_selector_cannot_change(raw):
    deployment = rendered(1)[2]
    raw.apply(deployment)
    deployment["spec"]["selector"]["matchLabels"]["extra"] = "x"
    deployment["spec"]["template"]["metadata"]["labels"]["extra"] = "x"
    code, status = raw.apply(deployment)
    assert code == 422 and "spec.selector" in status["message"] and "field is immutable" in status["message"]


def test_the_typed_client_raises_its_own_exceptions_for_status_answers(kubeconfig):
    with config.new_client_from_config(config_file=str(kubeconfig), persist_config=False) as api_client:
        with pytest.raises(client.exceptions.NotFoundException):
            client.CoreV1Api(api_client).read_namespaced_config_map("absent", NAMESPACE)


# --- reading ---


def test_lists_filter_by_label_and_field_selectors(raw):
    for name, tier in (("a", "gold"), ("b", "silver"), ("c", "gold")):
        raw.apply(config_map(name, labels={"tier": tier}))
    names = lambda **query: [i["metadata"]["name"] for i in raw.get("ConfigMap", **query)[1]["items"]]  # noqa: E731
    assert names(labelSelector="tier=gold") == ["a", "c"]
    assert names(labelSelector="tier in (silver,bronze)") == ["b"]
    assert names(labelSelector="tier!=gold,tier") == ["b"]
    assert names(fieldSelector="metadata.name=c") == ["c"]
    code, status = raw.get("ConfigMap", fieldSelector="data.x=1")
    assert (code, status["message"]) == (400, "field label not supported: data.x")


def test_resource_versions_increase_across_all_kinds(raw):
    versions = [int(raw.apply(obj)[1]["metadata"]["resourceVersion"]) for obj in rendered(1)]
    listed = raw.get("ConfigMap")[1]
    assert versions == sorted(set(versions)) and int(listed["metadata"]["resourceVersion"]) >= versions[-1]
    assert "kind" not in listed["items"][0]  # list items carry no kind/apiVersion, as on a real server


def test_every_request_is_recorded_as_rbac_sees_it(raw, kube):
    raw.apply(config_map())
    raw.get("ConfigMap", "settings")
    raw.get("ConfigMap")
    raw.watch("ConfigMap", timeoutSeconds="1")
    raw.request("DELETE", f"{collection('ConfigMap')}/settings")
    assert [(c.method, c.group_version, c.resource, c.subresource, c.verb) for c in kube.calls] == [
        ("PATCH", "v1", "configmaps", "", "patch"),
        ("GET", "v1", "configmaps", "", "get"),
        ("GET", "v1", "configmaps", "", "list"),
        ("GET", "v1", "configmaps", "", "watch"),
        ("DELETE", "v1", "configmaps", "", "delete"),
    ]
    assert kube.calls[0].path == f"{collection('ConfigMap')}/settings"


# --- watch ---


def test_a_watch_streams_the_changes_after_its_resource_version(raw):
    start = raw.apply(config_map("first"))[1]["metadata"]["resourceVersion"]
    raw.apply(config_map("second"))
    raw.apply(config_map("second", data={"k": "v"}))
    raw.request("DELETE", f"{collection('ConfigMap')}/first")
    events = raw.watch("ConfigMap", resourceVersion=start, timeoutSeconds="1")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "second"),
        ("MODIFIED", "second"),
        ("DELETED", "first"),
    ]
    assert events[0]["object"]["kind"] == "ConfigMap"
    named = raw.watch("ConfigMap", resourceVersion=start, fieldSelector="metadata.name=first", timeoutSeconds="1")
    assert [e["type"] for e in named] == ["DELETED"]


def test_a_watch_without_a_resource_version_starts_with_the_current_objects(raw):
    raw.apply(config_map("present"))
    events = raw.watch("ConfigMap", timeoutSeconds="1")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "present")]


def test_a_watch_ends_after_its_timeout(raw):
    started = time.monotonic()
    assert (
        raw.watch(
            "ConfigMap", resourceVersion=str(raw.get("ConfigMap")[1]["metadata"]["resourceVersion"]), timeoutSeconds="1"
        )
        == []
    )
    assert 0.9 < time.monotonic() - started < 3


def test_a_watch_from_a_compacted_resource_version_gets_410_expired(raw, kube):
    start = raw.apply(config_map("first"))[1]["metadata"]["resourceVersion"]
    raw.apply(config_map("second"))
    kube.expire_watch_history()
    events = raw.watch("ConfigMap", resourceVersion=start, timeoutSeconds="1")
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
    assert status["message"].startswith(f"too old resource version: {start} (")
    fresh = raw.get("ConfigMap")[1]["metadata"]["resourceVersion"]
    assert raw.watch("ConfigMap", resourceVersion=fresh, timeoutSeconds="1") == []


def test_an_injected_410_answers_only_the_next_watch(raw, kube):
    fresh = raw.get("ConfigMap")[1]["metadata"]["resourceVersion"]
    kube.inject_watch_410()
    assert raw.watch("ConfigMap", resourceVersion=fresh, timeoutSeconds="1")[0]["object"]["code"] == 410
    assert raw.watch("ConfigMap", resourceVersion=fresh, timeoutSeconds="1") == []


# --- the Deployment controller and the pods ---


def test_a_rollout_runs_pods_named_and_labelled_like_real_ones(raw, kube):
    apply_all(raw, rendered(1))
    deployment = rolled_out(kube)
    (pod,) = pods(kube)
    digest = pod["metadata"]["labels"]["pod-template-hash"]
    assert (
        pod["metadata"]["name"].startswith(f"{NAME}-{digest}-")
        and len(pod["metadata"]["name"]) == len(f"{NAME}-{digest}-") + 5
    )
    assert pod["metadata"]["labels"]["modelgate.io/version"] == "1"
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    (rs,) = kube.list("replicasets", NAMESPACE)
    assert rs["metadata"]["name"] == f"{NAME}-{digest}"
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    conditions = {c["type"]: c["reason"] for c in deployment["status"]["conditions"]}
    assert conditions == {"Available": "MinimumReplicasAvailable", "Progressing": "NewReplicaSetAvailable"}


def test_a_ready_pod_serves_its_version_through_the_pod_proxy(raw, kube):
    apply_all(raw, rendered(1))
    rolled_out(kube)
    (pod,) = pods(kube)
    base = f"/api/v1/namespaces/{NAMESPACE}/pods/{pod['metadata']['name']}"
    code, answer = raw.request("GET", f"{base}:8501/proxy/v1/models/iris/versions/1")
    assert code == 200 and answer["model_version_status"][0]["state"] == "AVAILABLE"
    code, answer = raw.request(
        "POST", f"{base}:http/proxy/v1/models/iris/labels/staging:predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]}
    )
    assert code == 200 and abs(sum(answer["predictions"][0]) - 1) < 1e-5
    code, status = raw.request("GET", f"{base}/proxy/v1/models/iris")  # no port: the first one, gRPC
    assert (code, status["reason"]) == (503, "ServiceUnavailable") and ":8500: connect: connection refused" in status[
        "message"
    ]
    assert kube.calls[-1][3:] == ("pods", "proxy", "get")


def test_a_rolling_update_keeps_every_replica_available_and_replaces_them_all(raw, kube):
    target = m.Target(**{**TARGET.__dict__, "replicas": 2})
    apply_all(raw, rendered(1, target))
    rolled_out(kube, replicas=2)
    since = kube.store.resource_version
    apply_all(raw, rendered(2, target))
    rolled_out(kube, replicas=2)
    statuses = [
        o.get("status", {})
        for _, o in kube.history("Deployment", NAMESPACE, NAME)
        if int(o["metadata"]["resourceVersion"]) > since
    ]
    assert min(s.get("availableReplicas", 0) for s in statuses) == 2  # maxUnavailable 0
    assert max(s.get("replicas", 0) for s in statuses) == 3  # maxSurge 1
    assert [
        p["metadata"]["labels"]["modelgate.io/version"]
        for p in pods(kube)
        if not p["metadata"].get("deletionTimestamp")
    ] == ["2", "2"]


def test_a_version_that_cannot_load_crash_loops_with_back_off_events(raw, kube):
    apply_all(raw, rendered(BROKEN))
    pod = kube.wait_for(
        lambda: next(
            (p for p in pods(kube) if p["status"].get("containerStatuses", [{}])[0].get("restartCount", 0) >= 2), None
        ),
        timeout=20,
    )
    container = pod["status"]["containerStatuses"][0]
    assert not container["ready"] and container["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert container["lastState"]["terminated"]["exitCode"] == 1
    warnings = [e for e in kube.list("events", NAMESPACE) if e["type"] == "Warning"]
    assert warnings[0]["reason"] == "BackOff" and warnings[0]["count"] >= 2
    assert warnings[0]["involvedObject"]["fieldPath"] == "spec.containers{tensorflow-serving}"


def test_a_failing_fetch_keeps_the_pod_in_init_and_retries(raw, kube, fetched):
    apply_all(raw, rendered(9))  # no such version in MLflow
    kube.wait_for(lambda: fetched.count(("iris", 9)) >= 2, timeout=10)
    (pod,) = pods(kube)
    init = pod["status"]["initContainerStatuses"][0]
    assert pod["status"]["phase"] == "Pending" and init["restartCount"] >= 1
    assert "has no artifacts" in init["lastState"]["terminated"]["message"]


@pytest.mark.parametrize("mode, reason", [("image_pull", "ImagePullBackOff"), ("crash_loop", "CrashLoopBackOff")])
def test_injected_pod_failures_show_the_kubelets_reasons(raw, kube, mode, reason):
    kube.fail_pods(NAMESPACE, NAME, mode)
    apply_all(raw, rendered(1))

    def waiting():
        found = pods(kube)
        state = found and found[0]["status"].get("containerStatuses", [{}])[0].get("state", {})
        return bool(state) and state.get("waiting", {}).get("reason") == reason

    kube.wait_for(waiting, timeout=10)
    assert not pods(kube)[0]["status"]["containerStatuses"][0]["ready"]


def test_a_stalled_pod_runs_but_never_becomes_ready(raw, kube):
    kube.fail_pods(NAMESPACE, NAME, "stall")
    apply_all(raw, rendered(1))
    kube.wait_for(lambda: pods(kube) and pods(kube)[0]["status"]["phase"] == "Running", timeout=10)
    # Not ready after ten readiness probes (counted, not slept for: a slow machine must not pass
    # this by never having probed).
    runtime = kube.kubelet.runtime(NAMESPACE, pods(kube)[0]["metadata"]["name"])
    kube.wait_for(lambda: runtime.probes >= 10, timeout=30, message="ten readiness probes")
    (pod,) = pods(kube)
    assert not pod["status"]["containerStatuses"][0]["ready"]
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    code, answer = raw.request(
        "GET", f"/api/v1/namespaces/{NAMESPACE}/pods/{pod['metadata']['name']}:8501/proxy/v1/models/iris/versions/1"
    )
    assert code == 200 and answer["model_version_status"][0]["state"] == "LOADING"


def test_deleting_a_pod_stops_its_model_server_and_a_new_pod_replaces_it(raw, kube):
    apply_all(raw, rendered(1))
    rolled_out(kube)
    (pod,) = pods(kube)
    name = pod["metadata"]["name"]
    url = kube.kubelet.runtime(NAMESPACE, name).server.url
    code, answer = raw.request("DELETE", f"{collection('Pod')}/{name}")
    assert code == 200 and answer["metadata"]["deletionTimestamp"]  # graceful: the pod itself, terminating
    kube.wait_for(lambda: kube.get("Pod", NAMESPACE, name) is None, timeout=10)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=1).close()
    rolled_out(kube)
    assert [p["metadata"]["name"] for p in pods(kube)] != [name]


def test_deleting_a_deployment_answers_a_status_and_its_pods_go_too(raw, kube):
    apply_all(raw, rendered(1))
    rolled_out(kube)
    code, status = raw.request("DELETE", f"{collection('Deployment')}/{NAME}")
    assert (code, status["kind"], status["status"]) == (200, "Status", "Success")
    kube.wait_for(lambda: not pods(kube) and not kube.list("replicasets", NAMESPACE), timeout=10)


def test_no_progress_within_the_deadline_is_progress_deadline_exceeded_until_a_new_template(raw, kube):
    target = m.Target(**{**TARGET.__dict__, "progress_deadline_seconds": 1})
    kube.fail_pods(NAMESPACE, NAME, "stall")
    apply_all(raw, rendered(1, target))

    def progressing():
        d = kube.get("Deployment", NAMESPACE, NAME)
        return next((c for c in d.get("status", {}).get("conditions", []) if c["type"] == "Progressing"), {})

    condition = kube.wait_for(
        lambda: progressing().get("reason") == "ProgressDeadlineExceeded" and progressing(), timeout=10
    )
    assert condition["status"] == "False" and condition["message"].endswith("has timed out progressing.")
    kube.clear_failures()
    since = kube.store.resource_version
    apply_all(raw, rendered(2, target))
    kube.wait_for(lambda: progressing().get("reason") == "NewReplicaSetAvailable", timeout=20)
    reasons = [
        c["reason"]
        for _, o in kube.history("Deployment", NAMESPACE, NAME)
        if int(o["metadata"]["resourceVersion"]) > since
        for c in o.get("status", {}).get("conditions", [])
        if c["type"] == "Progressing"
    ]
    assert reasons[0] == "ProgressDeadlineExceeded" and "NewReplicaSetCreated" in reasons
    assert reasons.index("NewReplicaSetCreated") < reasons.index("NewReplicaSetAvailable")


def test_rolling_back_to_an_older_template_reuses_its_replica_set_and_may_briefly_report_the_old_deadline(raw, kube):
    """As on a real cluster, the Deployment controller sees the failed ReplicaSet's pods go one
    sync late, so one status still says ProgressDeadlineExceeded after the rollback is observed."""
    target = m.Target(**{**TARGET.__dict__, "progress_deadline_seconds": 1})
    v1 = rendered(1, target)
    apply_all(raw, v1)
    rolled_out(kube)
    (good,) = pods(kube)
    apply_all(raw, rendered(BROKEN, target))
    kube.wait_for(
        lambda: any(
            c["reason"] == "ProgressDeadlineExceeded"
            for c in kube.get("Deployment", NAMESPACE, NAME)["status"]["conditions"]
        ),
        timeout=15,
    )
    generation = apply_all(raw, v1)[2]["metadata"]["generation"]
    deployment = rolled_out(kube)
    assert [p["metadata"]["name"] for p in pods(kube) if not p["metadata"].get("deletionTimestamp")] == [
        good["metadata"]["name"]
    ]
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    observed = [
        o["status"]
        for _, o in kube.history("Deployment", NAMESPACE, NAME)
        if o.get("status", {}).get("observedGeneration") == generation
    ]
    assert any(c["reason"] == "ProgressDeadlineExceeded" for c in observed[0]["conditions"])


def test_the_autoscaler_keeps_replicas_within_its_bounds(raw, kube):
    target = m.Target(**{**TARGET.__dict__, "autoscaling": m.Autoscaling(min_replicas=2, max_replicas=4)})
    deployment = apply_all(raw, rendered(1, target))[2]
    assert deployment["spec"]["replicas"] == 1  # defaulted: Modelgate leaves replicas to the HPA
    rolled_out(kube, replicas=2)
    scaler = kube.get("Deployment", NAMESPACE, NAME)["metadata"]["managedFields"]
    assert any(e["manager"] == "kube-controller-manager" and e.get("subresource") == "scale" for e in scaler)
