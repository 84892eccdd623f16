"""A canary on Kubernetes end to end: KubernetesBackend and the real `kubernetes` client over
HTTP against the test API server (tests/kubeapi), whose pods run the conftest's SavedModels in the
TF Serving stand-in. Version 1 is stable, version 2 the canary, version 3 cannot load.

Basic splitting: two Deployments behind the one Service, pod counts from
canary_manifests.split_replicas (see tests/test_canary_manifests.py for the table). With a
Gateway: two Services and the HTTPRoute's weights."""

import json
import threading
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest

from deployer import manifests as m
from deployer.backends.errors import PermanentError, RolloutFailed, RolloutTimeout
from deployer.backends.kubernetes import KubernetesBackend
from deployer.backends.kubernetes_api import KubernetesApi
from deployer.metrics import collect
from deployer.rollout_status import RouteRefused
from tests.kubeapi import resources
from tests.kubeapi.fixtures import (  # noqa: F401 - fixtures
    BROKEN,
    NAME,
    NAMESPACE,
    TARGET,
    fetch_model,
    fetched,
    kube,
    kubeconfig,
    release,
    savedmodels,
    valid,
)
from tests.kubeapi.gateway import CONTROLLER_NAME, GatewayStandIn

CANARY = f"{NAME}-canary"
ROW = [5.1, 3.5, 1.4, 0.2]
PREDICT = "/v1/models/iris/labels/staging:predict"


def canary(version: int = 2) -> m.Release:
    return m.Release(**{**release(version).__dict__, "track": "canary"})


@pytest.fixture
def client(kubeconfig):
    with KubernetesApi(namespace=NAMESPACE, kubeconfig=str(kubeconfig), request_timeout=10) as made:
        yield made


def backend_for(client, **target) -> KubernetesBackend:
    return KubernetesBackend(
        target=m.Target(**{**TARGET.__dict__, "progress_deadline_seconds": 30, **target}), client=client
    )


def deploy(backend: KubernetesBackend, objects: list[dict]) -> list[dict]:
    backend.apply(valid(objects))
    backend.wait(objects, timeout=90, progress=lambda message: None)
    return objects


def live_pods(kube, selector: str) -> list[dict]:
    return [
        p for p in kube.list("pods", NAMESPACE, label_selector=selector) if not p["metadata"].get("deletionTimestamp")
    ]


def replicas(kube, name: str) -> int | None:
    found = kube.get("Deployment", NAMESPACE, name)
    return found and found["spec"]["replicas"]


def versions(backend: KubernetesBackend, release: m.Release) -> list[str]:
    """The version each of the track's pods answers the environment's label URL with."""
    answers = backend.call(release, "GET", "/v1/models/iris/labels/staging")
    assert answers and all(a.status == 200 for a in answers), answers
    predictions = backend.call(release, "POST", PREDICT, {"instances": [ROW]})
    assert all(a.status == 200 and len(a.body["predictions"][0]) == 3 for a in predictions), predictions
    return sorted(a.body["model_version_status"][0]["version"] for a in answers)


class Watcher:
    """Samples the stable track's ready pods until stopped: stable traffic never stops as long
    as the Service always has a ready stable pod to send it to."""

    def __init__(self, client: KubernetesApi):
        self.client, self.samples, self.stop = client, [], threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.wait(0.1):
            self.samples.append(len(self.client.serving_pods(NAME, track="stable")))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)


def stable_replica_sets(kube) -> set[str]:
    return {
        rs["metadata"]["name"]
        for rs in kube.list("replicasets", NAMESPACE)
        if rs["metadata"]["ownerReferences"][0]["name"] == NAME
    }


# --- basic: two Deployments behind one Service ----------------------------------------------


def test_a_basic_canary_goes_10_then_50_percent_of_the_pods_and_ends_with_stable_serving(client, kube, kubeconfig):
    backend = backend_for(client, replicas=2)
    deploy(backend, backend.render(release(1)))
    stable_sets = stable_replica_sets(kube)
    watching = KubernetesApi(namespace=NAMESPACE, kubeconfig=str(kubeconfig), request_timeout=10)
    with watching, Watcher(watching) as watcher:
        at_10 = deploy(backend, backend.render_canary(release(1), canary(2), 10))
        # 2 replicas at 10 %: 1 canary pod beside 2 stable ones (33 %, the nearest Argo's counts get).
        assert (replicas(kube, CANARY), replicas(kube, NAME)) == (1, 2)
        assert versions(backend, canary()) == ["2"] and versions(backend, release(1)) == ["1", "1"]
        service = kube.get("Service", NAMESPACE, NAME)["spec"]["selector"]
        selected = live_pods(kube, ",".join(f"{k}={v}" for k, v in service.items()))
        assert sorted(p["metadata"]["labels"]["modelgate.io/track"] for p in selected) == ["canary", "stable", "stable"]

        # The replicas panel lists both Deployments' pods, each with its track, and counts them all.
        health = client.deployment_health(NAME)
        assert sorted(p["track"] for p in health["pods"]) == ["canary", "stable", "stable"]
        assert (health["desired"], health["ready"], health["available"]) == (3, 3, 3)

        # The metrics reader gives each pod its track.
        reading = collect.read_pods(SimpleNamespace(name=NAME), client)
        assert sorted(reading.tracks.values()) == ["canary", "stable", "stable"]
        assert set(reading.counters) == set(reading.tracks)

        deploy(backend, backend.render_canary(release(1), canary(2), 50))
        # 50 %: one pod each, the stable Deployment scaled down once the canary's pods were ready.
        assert (replicas(kube, CANARY), replicas(kube, NAME)) == (1, 1)
        kube.wait_for(lambda: len(live_pods(kube, f"app.kubernetes.io/instance={NAME}")) == 2, timeout=30)
        assert versions(backend, canary()) == ["2"] and versions(backend, release(1)) == ["1"]

        backend.canary_end(release(1), at_10)
        assert replicas(kube, NAME) == 2 and kube.get("Deployment", NAMESPACE, CANARY) is None
        assert kube.get("ConfigMap", NAMESPACE, f"{CANARY}-v2") is None
        kube.wait_for(lambda: not live_pods(kube, "modelgate.io/track=canary"), timeout=30)
        assert versions(backend, release(1)) == ["1", "1"]
        assert backend.call(canary(), "GET", "/v1/models/iris") == []  # no canary pod is left
        assert [p["track"] for p in client.deployment_health(NAME)["pods"]] == ["stable", "stable"]

    assert watcher.samples and min(watcher.samples) >= 1, watcher.samples
    # Only scaled, never re-templated: the stable pods were never replaced.
    assert stable_replica_sets(kube) == stable_sets
    backend.canary_end(release(1), at_10)  # again: what is gone is fine


def test_a_promoted_canary_becomes_stable_and_ending_the_canary_keeps_its_config(client, kube):
    backend = backend_for(client, replicas=1)
    deploy(backend, backend.render(release(1)))
    objects = deploy(backend, backend.render_canary(release(1), canary(2), 50))
    assert (replicas(kube, CANARY), replicas(kube, NAME)) == (1, 1)  # one replica: 50 % whatever the weight

    deploy(backend, backend.render(release(2)))  # the promotion: version 2 on the stable track
    backend.canary_end(release(2), objects)

    assert kube.get("Deployment", NAMESPACE, CANARY) is None
    assert kube.get("ConfigMap", NAMESPACE, f"{NAME}-v2") is not None  # the stable's own
    assert versions(backend, release(2)) == ["2"]


def test_a_canary_whose_pods_cannot_start_fails_its_wait_and_takes_no_stable_pod(client, kube):
    backend = backend_for(client, replicas=2, progress_deadline_seconds=3)
    deploy(backend, backend.render(release(1)))
    objects = backend.render_canary(release(1), canary(BROKEN), 50)
    backend.apply(objects)
    assert replicas(kube, NAME) == 2  # the scale-down waits for a canary that is ready

    with pytest.raises(RolloutFailed, match=CANARY):
        backend.wait(objects, timeout=60, progress=lambda message: None)

    assert replicas(kube, NAME) == 2 and versions(backend, release(1)) == ["1", "1"]
    backend.canary_end(release(1), objects)
    assert kube.get("Deployment", NAMESPACE, CANARY) is None


# --- precise: a Gateway's HTTPRoute weighs two Services ---------------------------------------


def route_weights(kube) -> list[tuple[str, int]]:
    route = kube.get("HTTPRoute", NAMESPACE, NAME)
    return [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]]


def programmed_weights(edge: GatewayStandIn) -> list[tuple[str, int]]:
    """The weights the Gateway's data plane routes by (the route as its controller last took it)."""
    (route,) = edge.routes()
    return [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]]


def accepted_generations(kube) -> list[tuple[str, str, int]]:
    route = kube.get("HTTPRoute", NAMESPACE, NAME)
    return [
        (c["type"], c["status"], c["observedGeneration"])
        for entry in (route.get("status") or {}).get("parents") or []
        for c in entry["conditions"]
    ]


def test_a_gateway_canary_moves_the_routes_weights_once_its_pods_are_ready(client, kube):
    kube.install_gateway_api()
    backend = backend_for(client, replicas=2, gateway=m.Gateway(name="edge", namespace="gateways"))
    # The stand-in's controller takes each new generation of the route 2 s after it sees it.
    edge = GatewayStandIn(kube, name="edge", namespace="gateways", status_delay=2.0)
    with edge:
        _a_gateway_canary(client, kube, backend, edge)


def _a_gateway_canary(client, kube, backend, edge):
    first = deploy(backend, backend.render(release(1)))
    assert route_weights(kube) == [(NAME, 100)]
    live = client.read(first)[-1]
    assert live["spec"] == first[-1]["spec"]  # stored as applied: every default written out
    assert {e["manager"] for e in live["metadata"]["managedFields"]} == {"modelgate", "gateway-stand-in"}
    assert accepted_generations(kube) == [("Accepted", "True", 1), ("ResolvedRefs", "True", 1)]

    objects = backend.render_canary(release(1), canary(2), 10)
    backend.apply(objects)
    assert route_weights(kube) == [(NAME, 100)]  # no weight on a canary with no ready pod
    seen: list[tuple[float, str, list]] = []
    backend.wait(
        objects, timeout=90, progress=lambda message: seen.append((time.monotonic(), message, programmed_weights(edge)))
    )
    returned = time.monotonic()
    moved = next(t for t, message, _ in seen if message.startswith("the canary's pods are ready"))
    # The wait went on while the controller had not taken generation 2, the data plane still on
    # the old weights, and returned only once the route's status caught up with its generation.
    waiting = [w for _, message, w in seen if "to take generation 2 of HTTPRoute" in message]
    assert waiting and all(w == [(NAME, 100)] for w in waiting)
    assert returned - moved >= 2.0
    assert kube.get("HTTPRoute", NAMESPACE, NAME)["metadata"]["generation"] == 2
    assert accepted_generations(kube) == [("Accepted", "True", 2), ("ResolvedRefs", "True", 2)]
    assert route_weights(kube) == programmed_weights(edge) == [(NAME, 90), (CANARY, 10)]
    edge.status_delay = 0.2
    assert (replicas(kube, CANARY), replicas(kube, NAME)) == (1, 2)
    # Each Service selects its own track's pods.
    for service, track in ((NAME, "stable"), (CANARY, "canary")):
        selector = kube.get("Service", NAMESPACE, service)["spec"]["selector"]
        pods = live_pods(kube, ",".join(f"{k}={v}" for k, v in selector.items()))
        assert pods and {p["metadata"]["labels"]["modelgate.io/track"] for p in pods} == {track}
    assert versions(backend, canary()) == ["2"] and versions(backend, release(1)) == ["1", "1"]

    deploy(backend, backend.render_canary(release(1), canary(2), 50))
    assert route_weights(kube) == [(NAME, 50), (CANARY, 50)]
    assert (replicas(kube, CANARY), replicas(kube, NAME)) == (1, 2)

    backend.canary_end(release(1), objects)
    assert route_weights(kube) == programmed_weights(edge) == [(NAME, 100)]
    assert accepted_generations(kube) == [("Accepted", "True", 4), ("ResolvedRefs", "True", 4)]
    assert [kube.get(kind, NAMESPACE, name) for kind, name in (("Service", CANARY), ("Deployment", CANARY))] == [
        None,
        None,
    ]
    assert versions(backend, release(1)) == ["1", "1"]
    backend.canary_end(release(1), objects)  # again: nothing left to do, nothing fails
    assert route_weights(kube) == [(NAME, 100)]


# The route's status, as a Gateway controller writes it: without pods, the route alone.


def gateway_backend(client) -> tuple[KubernetesBackend, dict]:
    backend = backend_for(client, gateway=m.Gateway(name="edge", namespace="gateways"))
    return backend, backend.render(release(1))[-1]


def test_a_route_to_a_missing_service_fails_its_wait_quoting_the_controllers_reason(client, kube):
    kube.install_gateway_api()
    backend, route = gateway_backend(client)
    with GatewayStandIn(kube, name="edge", namespace="gateways", status_delay=0.1):
        client.apply([route])  # its Service was never applied
        with pytest.raises(RouteRefused) as refused:
            backend._wait_for_route(route, time.monotonic() + 30, lambda message: None)
    assert str(refused.value).startswith(
        f"Gateway gateways/edge refuses HTTPRoute {NAMESPACE}/{NAME} (generation 1): ResolvedRefs=False, "
        f"reason 'BackendNotFound': Service {NAMESPACE}/{NAME} not found; check that every backendRef names a "
        f"Service in namespace {NAMESPACE}"
    )


def test_a_route_the_gateway_does_not_accept_fails_its_wait_saying_what_to_check(client, kube, kubeconfig):
    """A controller's refusal written through the status subresource (PUT .../status), as a real
    controller writes it: the generation does not move, and a later spec change keeps the status
    and moves the generation (kubernetes/kubernetes staging/src/k8s.io/apiextensions-apiserver/
    pkg/registry/customresource/strategy.go:122-151 at 0304c56, PrepareForUpdate)."""
    kube.install_gateway_api()
    backend, route = gateway_backend(client)
    (applied,) = client.apply([route])
    condition = {
        "type": "Accepted",
        "status": "False",
        "reason": "NotAllowedByListeners",
        "message": "no listener of Gateway gateways/edge allows routes from namespace " + NAMESPACE,
        "observedGeneration": 1,
        "lastTransitionTime": "2025-01-01T00:00:00Z",
    }
    applied["status"] = {
        "parents": [
            {
                "parentRef": route["spec"]["parentRefs"][0],
                "controllerName": CONTROLLER_NAME,
                "conditions": [
                    condition,
                    {**condition, "type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs"},
                ],
            }
        ]
    }
    request = urllib.request.Request(
        f"{kube.url}/apis/gateway.networking.k8s.io/v1/namespaces/{NAMESPACE}/httproutes/{NAME}/status",
        data=json.dumps(applied).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {kube.token}", "Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as answer:
        written = json.loads(answer.read())
    assert written["metadata"]["generation"] == 1 and written["status"] == applied["status"]
    with pytest.raises(RouteRefused, match="NotAllowedByListeners.*allowedRoutes"):
        backend._wait_for_route(route, time.monotonic() + 30, lambda message: None)
    # A status of an older generation is history: a spec change waits again.
    changed = json.loads(json.dumps(route))
    changed["spec"]["rules"][0]["backendRefs"][0]["weight"] = 50
    (reapplied,) = client.apply([changed])
    assert reapplied["metadata"]["generation"] == 2 and reapplied["status"] == applied["status"]
    with pytest.raises(RolloutTimeout, match="to take generation 2 of HTTPRoute"):
        backend._wait_for_route(changed, time.monotonic() + 1, lambda message: None)


def test_a_route_no_controller_takes_times_out_asking_whether_one_runs(client, kube):
    kube.install_gateway_api()
    backend, route = gateway_backend(client)
    client.apply([route])
    started = time.monotonic()
    with pytest.raises(RolloutTimeout) as timed_out:
        backend._wait_for_route(route, started + 1.5, lambda message: None)
    assert time.monotonic() - started >= 1.5
    assert str(timed_out.value) == (
        f"HTTPRoute {NAMESPACE}/{NAME} was not taken by its Gateway within 2 s: no Gateway controller has accepted "
        f"HTTPRoute {NAMESPACE}/{NAME} yet: is a controller running for Gateway gateways/edge?"
    )
    assert resources.by_name("httproutes").status_subresource


def test_without_the_gateway_api_crds_a_route_is_refused_saying_so(client, kube):
    backend = backend_for(client, gateway=m.Gateway(name="edge"))
    with pytest.raises(PermanentError, match="install the Gateway API CRDs") as refused:
        backend.apply(valid(backend.render(release(1))))
    assert "the server could not find the requested resource (HTTP 404)" in str(refused.value)
    assert client.read([backend.render(release(1))[-1]]) == [None]


def test_an_unknown_api_group_answers_a_bare_not_found_status(kube):
    """kube-apiserver with no CRD for the resource: customresource_handler.go:242-252 (commit
    37c19ef) passes the request on, not_found_handler.go:71-79 (commit 20cc31b) answers a Status
    with code 404, reason NotFound, this message and no details."""
    request = urllib.request.Request(
        f"{kube.url}/apis/gateway.networking.k8s.io/v1/namespaces/{NAMESPACE}/httproutes/{NAME}",
        headers={"Authorization": f"Bearer {kube.token}"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as answer:
        opener.open(request, timeout=10)
    assert answer.value.code == 404
    assert json.loads(answer.value.read()) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "the server could not find the requested resource",
        "reason": "NotFound",
        "code": 404,
    }
    kube.install_gateway_api()
    with pytest.raises(urllib.error.HTTPError) as answer:
        opener.open(request, timeout=10)
    assert json.loads(answer.value.read())["message"] == f'httproutes.gateway.networking.k8s.io "{NAME}" not found'


def test_the_test_api_server_refuses_a_route_field_its_crd_does_not_declare(client, kube):
    kube.install_gateway_api()
    route = m.render(m.Target(**{**TARGET.__dict__, "gateway": m.Gateway(name="edge")}), release(1))[-1]
    route["spec"]["rules"][0]["backendRefs"][0]["weigth"] = 3
    with pytest.raises(PermanentError, match=r"\.weigth: field not declared in schema"):
        client.apply([route])
    del route["spec"]["rules"][0]["backendRefs"][0]["weigth"]
    del route["spec"]["rules"][0]["backendRefs"][0]["port"]
    with pytest.raises(PermanentError, match="Must have port for Service reference"):
        client.apply([route])
