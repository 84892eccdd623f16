"""The Kubernetes backend, through the real `kubernetes` client over HTTP, against the fake API
server (tests/kubeapi): its pods run the conftest's real SavedModels in the local TF Serving
stand-in, so a rollout here is applied, scheduled, loaded, probed and served for real."""

import time

import pytest

from deployer import manifests as m
from deployer.backends.errors import PermanentError, RolloutFailed, RolloutTimeout, TransientError
from deployer.backends.kubernetes_api import KubernetesApi
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

ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture
def backend(kubeconfig):
    with KubernetesApi(namespace=NAMESPACE, kubeconfig=str(kubeconfig), request_timeout=10) as made:
        yield made


def deadline_target(seconds: int = 2) -> m.Target:
    return m.Target(**{**TARGET.__dict__, "progress_deadline_seconds": seconds})


def live_pods(kube) -> list[str]:
    return sorted(
        p["metadata"]["name"] for p in kube.list("pods", NAMESPACE) if not p["metadata"].get("deletionTimestamp")
    )


# --- apply, read, delete ---


def test_apply_returns_each_object_as_the_server_stored_it(backend, kube):
    objects = rendered(1)
    applied = backend.apply(objects)
    assert [(o["kind"], o["metadata"]["name"]) for o in applied] == [
        (o["kind"], o["metadata"]["name"]) for o in objects
    ]
    deployment = applied[2]
    assert deployment["metadata"]["uid"] and deployment["metadata"]["generation"] == 1
    assert {e["manager"] for e in deployment["metadata"]["managedFields"]} == {"modelgate"}
    assert [(c.resource, c.verb) for c in kube.calls] == [
        ("configmaps", "patch"),
        ("services", "patch"),
        ("deployments", "patch"),
    ]


def test_an_autoscaled_release_applies_its_autoscaler_too(backend, kube):
    target = m.Target(**{**TARGET.__dict__, "autoscaling": m.Autoscaling(min_replicas=2, max_replicas=5)})
    applied = backend.apply(rendered(1, target))
    assert applied[3]["kind"] == "HorizontalPodAutoscaler" and applied[3]["spec"]["maxReplicas"] == 5
    assert backend.wait_for_rollout(NAME, timeout=30)["status"]["availableReplicas"] == 2


def test_read_returns_the_live_objects_and_none_for_absent_ones(backend):
    objects = rendered(1)
    assert backend.read(objects) == [None, None, None]
    backend.apply(objects[:1])
    config_map, service, deployment = backend.read(objects)
    assert config_map["data"] == objects[0]["data"] and service is None and deployment is None


def test_an_out_of_band_edit_shows_up_in_read(backend, kube):
    objects = rendered(1)
    backend.apply(objects)
    kube.edit(
        "Deployment",
        NAMESPACE,
        NAME,
        lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="tensorflow/serving:2.18.0"),
    )
    live = backend.read(objects)[2]
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "tensorflow/serving:2.18.0"
    assert any(e["manager"] == "kubectl-edit" for e in live["metadata"]["managedFields"])


def test_applying_again_overwrites_an_edit_of_a_field_modelgate_owns(backend, kube):
    objects = rendered(1)
    backend.apply(objects)
    kube.edit("Deployment", NAMESPACE, NAME, lambda d: d["spec"].update(replicas=4))
    assert backend.apply(objects)[2]["spec"]["replicas"] == 1  # force: Modelgate's manifest wins


def test_delete_removes_the_objects_deployment_first_and_ignores_those_already_gone(backend, kube):
    target = m.Target(**{**TARGET.__dict__, "autoscaling": m.Autoscaling(min_replicas=1, max_replicas=2)})
    objects = rendered(1, target)
    backend.apply(objects)
    backend.wait_for_rollout(NAME, timeout=30)
    backend.delete(objects)
    assert backend.read(objects) == [None, None, None, None]
    backend.delete(list(reversed(objects)))  # again, in another order: nothing left, no error
    kube.wait_for(lambda: not kube.list("pods", NAMESPACE), timeout=10)
    deleted = [c.resource for c in kube.calls if c.verb == "delete"]
    assert deleted[:4] == deleted[4:] == ["horizontalpodautoscalers", "deployments", "services", "configmaps"]


def test_objects_rendered_for_another_namespace_are_refused(backend):
    elsewhere = m.render(
        m.Target(**{**TARGET.__dict__, "namespace": "ml-prod"}),
        m.Release(model="iris", version=1, environment="staging", rollout_id=1, savedmodel_path="tf2model"),
    )
    with pytest.raises(PermanentError, match="namespace 'ml-prod'"):
        backend.apply(elsewhere)


# --- rollouts ---


def test_a_release_rolls_out_and_its_pod_serves_the_saved_model(backend, kube):
    messages = []
    backend.apply(rendered(1))
    deployment = backend.wait_for_rollout(NAME, timeout=30, progress=messages.append)
    assert deployment["status"]["availableReplicas"] == 1
    assert messages[-1] == f'deployment "{NAME}" successfully rolled out'
    assert len(messages) == len(set(messages))  # told only when the message changes
    (pod,) = backend.serving_pods(NAME, version=1)
    status, answer = backend.proxy(pod, "GET", "v1/models/iris/versions/1")
    assert status == 200 and answer["model_version_status"][0]["state"] == "AVAILABLE"
    status, answer = backend.proxy(pod, "POST", "v1/models/iris/labels/staging:predict", {"instances": [ROW]})
    assert status == 200 and len(answer["predictions"][0]) == 3 and abs(sum(answer["predictions"][0]) - 1) < 1e-5


def test_a_new_version_replaces_the_old_pods(backend, kube):
    backend.apply(rendered(1))
    backend.wait_for_rollout(NAME, timeout=30)
    (old,) = backend.serving_pods(NAME, version=1)
    backend.apply(rendered(2))
    backend.wait_for_rollout(NAME, timeout=30)
    (new,) = backend.serving_pods(NAME)
    assert new != old and backend.serving_pods(NAME, version=2) == [new] and backend.serving_pods(NAME, version=1) == []
    status, answer = backend.proxy(new, "GET", "v1/models/iris")
    assert status == 200 and [v["version"] for v in answer["model_version_status"]] == ["2"]


def test_no_progress_within_the_deadline_raises_rollout_failed(backend, kube):
    backend.apply(rendered(1, deadline_target()))
    backend.wait_for_rollout(NAME, timeout=30)
    kube.fail_pods(NAMESPACE, NAME, "stall")  # never ready, no error: only the deadline says so
    backend.apply(rendered(2, deadline_target()))
    with pytest.raises(RolloutFailed, match="exceeded its progress deadline"):
        backend.wait_for_rollout(NAME, timeout=20)


# --- failing fast, with the cause ---


def test_pods_forbidden_by_pod_security_fail_the_rollout_at_once_naming_the_fields(backend, kube):
    """The Deployment's ReplicaFailure condition (copied from its ReplicaSet, progress.go
    getReplicaFailures) ends the wait long before the 600 s progress deadline."""
    kube.label_namespace(NAMESPACE, {"pod-security.kubernetes.io/enforce": "restricted"})
    backend.apply(rendered(1, m.Target(**{**TARGET.__dict__, "pod_security_level": "privileged"})))
    started = time.monotonic()
    with pytest.raises(RolloutFailed) as failed:
        backend.wait_for_rollout(NAME, timeout=60)
    assert time.monotonic() - started < 10
    message = str(failed.value)
    assert message.startswith(f"Deployment {NAMESPACE}/{NAME} cannot create its pods: FailedCreate: pods ")
    assert 'is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false' in message
    assert "runAsNonRoot != true" in message and 'capabilities.drop=["ALL"]' in message

    health = backend.deployment_health(NAME)
    assert health["pods"] == []
    assert [(c["type"], c["reason"]) for c in health["conditions"]] == [("ReplicaFailure", "FailedCreate")]
    assert health["events"][0]["kind"] == "ReplicaSet" and health["events"][0]["reason"] == "FailedCreate"
    assert health["events"][0]["message"].startswith("Error creating: pods ")


def test_a_crash_looping_version_fails_at_once_with_the_containers_last_message(backend, kube):
    backend.apply(rendered(1))
    backend.wait_for_rollout(NAME, timeout=30)
    backend.apply(rendered(BROKEN))  # progress deadline: 600 s
    started = time.monotonic()
    with pytest.raises(
        RolloutFailed,
        match="container tensorflow-serving is CrashLoopBackOff; last exit code 1 "
        r"\(Error\): Loading servable failed",
    ):
        backend.wait_for_rollout(NAME, timeout=60)
    assert time.monotonic() - started < 15


def test_a_pod_no_node_can_take_fails_the_rollout_at_once_with_the_schedulers_words(backend, kube):
    kube.fail_pods(NAMESPACE, NAME, "unschedulable")
    backend.apply(rendered(1))
    with pytest.raises(RolloutFailed, match=r"is Unschedulable: 0/1 nodes are available: 1 Insufficient cpu\."):
        backend.wait_for_rollout(NAME, timeout=60)
    health = backend.deployment_health(NAME)
    assert health["pods"][0]["phase"] == "Pending" and "Insufficient cpu" in health["pods"][0]["message"]
    assert health["events"][0]["reason"] == "FailedScheduling"


def test_an_image_that_cannot_be_pulled_fails_the_rollout_at_once(backend, kube):
    kube.fail_pods(NAMESPACE, NAME, "image_pull")
    backend.apply(rendered(1))
    started = time.monotonic()
    with pytest.raises(
        RolloutFailed,
        match=r"container tensorflow-serving is (ErrImagePull|ImagePullBackOff); "
        'Back-off pulling image "tensorflow/serving:2.19.0"',
    ):
        backend.wait_for_rollout(NAME, timeout=60)
    assert time.monotonic() - started < 10


def test_a_rollout_slower_than_the_timeout_raises_rollout_timeout_on_time(backend, kube):
    kube.fail_pods(NAMESPACE, NAME, "stall")
    backend.apply(rendered(1))
    started = time.monotonic()
    with pytest.raises(RolloutTimeout, match="0 of 1 updated replicas are available"):
        backend.wait_for_rollout(NAME, timeout=1.5)
    assert 1.5 <= time.monotonic() - started < 2.0  # not rounded up to the watch's whole seconds


def test_a_version_that_cannot_load_crash_loops_while_the_old_one_keeps_serving(backend, kube):
    backend.apply(rendered(1))
    backend.wait_for_rollout(NAME, timeout=30)
    (old,) = backend.serving_pods(NAME)
    backend.apply(rendered(BROKEN))

    def crash_looping():
        health = backend.deployment_health(NAME)
        broken = [p for p in health["pods"] if p["version"] == str(BROKEN)]
        return health if broken and broken[0]["restarts"] >= 1 and broken[0]["reason"] == "CrashLoopBackOff" else None

    health = kube.wait_for(crash_looping, timeout=20)
    assert (health["desired"], health["updated"], health["ready"], health["available"]) == (1, 1, 1, 1)
    assert {p["version"]: p["ready"] for p in health["pods"]} == {"1": True, str(BROKEN): False}
    assert health["events"][0]["reason"] == "BackOff" and health["events"][0]["type"] == "Warning"
    assert "Back-off restarting failed container tensorflow-serving" in health["events"][0]["message"]
    assert backend.serving_pods(NAME) == [old]
    assert backend.proxy(old, "POST", "v1/models/iris:predict", {"instances": [ROW]})[0] == 200


def test_an_image_that_cannot_be_pulled_shows_in_deployment_health(backend, kube):
    kube.fail_pods(NAMESPACE, NAME, "image_pull")
    backend.apply(rendered(1))

    def pulling():  # pods and events are two reads: wait until both show it
        health = backend.deployment_health(NAME)
        return (
            health
            if health["events"]
            and health["pods"]
            and health["pods"][0]["reason"] in ("ErrImagePull", "ImagePullBackOff")
            else None
        )

    health = kube.wait_for(pulling, timeout=10)
    assert not health["pods"][0]["ready"]
    assert {e["reason"] for e in health["events"]} <= {"Failed", "BackOff"}
    assert all(e["last_seen"] for e in health["events"]) and len(health["events"]) <= 20


def test_a_fetch_that_fails_shows_the_init_container_crash_looping(backend, kube):
    backend.apply(rendered(9))
    health = kube.wait_for(
        lambda: (h := backend.deployment_health(NAME))["pods"] and h["pods"][0]["restarts"] and h, timeout=10
    )
    assert health["pods"][0]["reason"] == "Init:CrashLoopBackOff" and health["pods"][0]["phase"] == "Pending"


def test_a_watch_that_gets_410_lists_again_and_still_finishes(backend, kube):
    backend.apply(rendered(1))
    kube.inject_watch_410(count=2)
    messages = []
    assert backend.wait_for_rollout(NAME, timeout=30, progress=messages.append)["status"]["availableReplicas"] == 1
    verbs = [c.verb for c in kube.calls if c.resource == "deployments"]
    assert verbs[:6] == ["patch", "get", "watch", "list", "watch", "list"]  # each 410: list, then watch again
    assert messages[-1].endswith("successfully rolled out")


def test_a_watch_after_a_compaction_recovers_from_the_listed_resource_version(backend, kube):
    backend.apply(rendered(1))
    backend.wait_for_rollout(NAME, timeout=30)
    backend.apply(rendered(2))
    kube.expire_watch_history()  # the version just read is now too old to watch from
    assert backend.wait_for_rollout(NAME, timeout=30)["metadata"]["generation"] == 2
    assert backend.serving_pods(NAME, version=2)


def test_reapplying_the_previous_release_after_a_failed_rollout_brings_back_the_old_pods(backend, kube):
    previous = rendered(1, deadline_target())
    backend.apply(previous)
    backend.wait_for_rollout(NAME, timeout=30)
    old = backend.serving_pods(NAME)
    backend.apply(rendered(BROKEN, deadline_target()))
    with pytest.raises(RolloutFailed):
        backend.wait_for_rollout(NAME, timeout=20)
    backend.apply(previous)

    def rolled_back():
        health = backend.deployment_health(NAME)
        return health["updated"] == health["available"] == 1 and live_pods(kube) == old

    kube.wait_for(rolled_back, timeout=20)
    # The old ReplicaSet is the new one again: its pod was never replaced, and counts as updated.
    assert backend.serving_pods(NAME, version=1) == old
    assert backend.read(previous)[2]["status"]["updatedReplicas"] == 1


def test_waiting_for_a_deployment_that_does_not_exist_is_permanent(backend):
    with pytest.raises(PermanentError, match=f'deployments.apps "{NAME}" not found'):
        backend.wait_for_rollout(NAME, timeout=5)


# --- pods ---


def test_serving_pods_leaves_out_pods_that_are_not_ready_or_are_terminating(backend, kube):
    backend.apply(rendered(1))
    backend.wait_for_rollout(NAME, timeout=30)
    (pod,) = backend.serving_pods(NAME)
    kube.fail_pods(NAMESPACE, NAME, "stall")  # the replacement the ReplicaSet starts never gets ready
    kube.edit("Pod", NAMESPACE, pod, lambda p: p["metadata"].update(deletionTimestamp="2030-01-01T00:00:00Z"))
    assert backend.serving_pods(NAME) == []
    assert backend.serving_pods("another-deployment") == []


def test_proxy_returns_tf_serving_errors_instead_of_raising(backend):
    backend.apply(rendered(1))
    backend.wait_for_rollout(NAME, timeout=30)
    (pod,) = backend.serving_pods(NAME)
    assert backend.proxy(pod, "GET", "v1/models/iris/versions/7") == (
        404,
        {"error": "Could not find version 7 of model iris"},
    )
    status, answer = backend.proxy(pod, "POST", "v1/models/iris:predict", {"instances": "oops"})
    assert status == 400 and "error" in answer


def test_proxy_raises_when_the_api_server_itself_refuses(backend, kube):
    backend.apply(rendered(1))
    backend.wait_for_rollout(NAME, timeout=30)
    (pod,) = backend.serving_pods(NAME)
    with pytest.raises(TransientError, match="connection refused"):
        backend.proxy(pod, "GET", "v1/models/iris", port=8500)  # gRPC: nothing answers HTTP there
    with pytest.raises(PermanentError, match='pods "gone" not found'):
        backend.proxy("gone", "GET", "v1/models/iris")


# --- errors ---


@pytest.mark.parametrize("code", [500, 503, 409, 429])
def test_server_errors_conflicts_and_throttling_are_transient(backend, kube, code):
    kube.inject_error(code, resource="deployments", message="etcdserver: request timed out")
    with pytest.raises(
        TransientError,
        match=rf"Applying Deployment {NAMESPACE}/{NAME}: etcdserver: request timed "
        rf"out \(HTTP {code}\)",
    ):
        backend.apply(rendered(1))
    backend.apply(rendered(1))  # the next try goes through


@pytest.mark.parametrize("code, words", [(403, "lacks a permission"), (422, "Invalid"), (400, "HTTP 400")])
def test_client_errors_are_permanent(backend, kube, code, words):
    kube.inject_error(code, message=f"Invalid {code}")
    with pytest.raises(PermanentError, match=words):
        backend.apply(rendered(1))


def test_an_unknown_field_is_permanent_although_the_server_answers_500(backend, kube):
    """SSA's typed conversion fails with a 500 and no Status reason (apiserver handlers/patch.go
    returns the field manager's error unwrapped); retrying the same manifest can never work."""
    deployment = rendered(1)[2]
    deployment["spec"]["foo"] = 1
    with pytest.raises(PermanentError) as failed:
        backend.apply([deployment])
    assert (
        f"failed to create typed patch object ({NAMESPACE}/{NAME}; apps/v1, Kind=Deployment): .spec.foo: "
        "field not declared in schema (HTTP 500)" in str(failed.value)
    )
    assert kube.get("Deployment", NAMESPACE, NAME) is None


@pytest.mark.parametrize(
    "code, reason, kind",
    [
        (500, "InternalError", TransientError),
        (500, "Invalid", PermanentError),
        (504, "Timeout", TransientError),
        (400, "BadRequest", PermanentError),
        (503, "ServiceUnavailable", TransientError),
    ],
)
def test_the_status_reason_decides_before_the_http_code(code, reason, kind):
    from deployer.backends.kubernetes_api import _classify

    assert isinstance(_classify(code, "something", "Applying", reason=reason), kind)


def test_an_invalid_manifest_is_permanent_with_the_servers_message(backend):
    deployment = rendered(1)[2]
    deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"] = "other"
    with pytest.raises(PermanentError, match="`selector` does not match template `labels`"):
        backend.apply([deployment])


def test_a_refused_token_is_permanent_and_never_shows_in_the_message(kube, kubeconfig, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_text(kubeconfig.read_text().replace(kube.token, "not-the-token"))
    with KubernetesApi(namespace=NAMESPACE, kubeconfig=str(wrong)) as refused:
        with pytest.raises(PermanentError, match="credentials were refused") as raised:
            refused.apply(rendered(1))
    assert "not-the-token" not in str(raised.value) and kube.token not in str(raised.value)


def test_an_unreachable_api_server_is_transient(kube, kubeconfig):
    with KubernetesApi(namespace=NAMESPACE, kubeconfig=str(kubeconfig), request_timeout=2) as unreachable:
        kube.stop()
        with pytest.raises(TransientError, match="did not answer"):
            unreachable.read(rendered(1))


def test_a_missing_kubeconfig_is_permanent_and_says_what_to_fix(tmp_path):
    with pytest.raises(PermanentError, match="does not exist .* fix the target's kubeconfig path"):
        KubernetesApi(namespace=NAMESPACE, kubeconfig=str(tmp_path / "absent"))
    with pytest.raises(PermanentError, match="give the target a kubeconfig path, or in_cluster=True"):
        KubernetesApi(namespace=NAMESPACE)


def test_an_unknown_context_is_permanent_and_lists_the_known_ones(kubeconfig):
    with pytest.raises(PermanentError, match=r"has no context 'prod' \(it has: test\): fix the target's context"):
        KubernetesApi(namespace=NAMESPACE, kubeconfig=str(kubeconfig), context="prod")


def test_a_broken_kubeconfig_is_permanent_without_quoting_its_secrets(tmp_path):
    broken = tmp_path / "kubeconfig"
    broken.write_text("users:\n- name: me\n  user:\n    token: hunter2-secret\n\t bad: [\n")
    with pytest.raises(PermanentError, match="not valid YAML") as raised:
        KubernetesApi(namespace=NAMESPACE, kubeconfig=str(broken))
    assert "hunter2" not in str(raised.value)


def test_outside_a_pod_in_cluster_configuration_is_permanent():
    with pytest.raises(PermanentError, match="In-cluster Kubernetes configuration is unusable"):
        KubernetesApi(namespace=NAMESPACE, in_cluster=True)


def test_the_backend_needs_only_a_small_set_of_permissions(backend, kube):
    """What an RBAC Role for the deployer must allow, as observed."""
    objects = rendered(1)
    backend.apply(objects)
    backend.wait_for_rollout(NAME, timeout=30)
    (pod,) = backend.serving_pods(NAME)
    backend.proxy(pod, "GET", "v1/models/iris")
    backend.deployment_health(NAME)
    backend.read(objects)
    backend.delete(objects)
    used = {(c.group_version, c.resource, c.subresource, c.verb) for c in kube.calls}
    assert used == {
        ("v1", "configmaps", "", "patch"),
        ("v1", "services", "", "patch"),
        ("apps/v1", "deployments", "", "patch"),
        ("apps/v1", "deployments", "", "get"),
        ("apps/v1", "deployments", "", "watch"),
        ("v1", "configmaps", "", "get"),
        ("v1", "services", "", "get"),
        ("v1", "pods", "", "list"),
        ("v1", "pods", "proxy", "get"),
        ("v1", "events", "", "list"),
        ("v1", "configmaps", "", "delete"),
        ("v1", "services", "", "delete"),
        ("apps/v1", "deployments", "", "delete"),
    }
