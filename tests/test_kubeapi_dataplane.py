"""The test API server's data-plane stand-ins (tests/kubeapi/dataplane.py, gateway.py): the
service proxy's choice of endpoint and the Gateway's choice of route and backendRef, pinned to
what kube-apiserver and the Gateway API spec say."""

import json
import urllib.error
import urllib.request
from collections import Counter

import pytest

from tests.kubeapi import resources
from tests.kubeapi.dataplane import Chooser, container_port, service_port
from tests.kubeapi.gateway import GatewayStandIn, route_for
from tests.kubeapi.server import FakeKubeApiServer

SERVICE = {
    "spec": {
        "selector": {"app": "x"},
        "ports": [
            {"name": "grpc", "port": 8500, "targetPort": "grpc"},
            {"name": "http", "port": 8501, "targetPort": "http"},
        ],
    }
}


def test_a_service_port_is_named_or_numbered_as_resource_location_resolves_it():
    # kube-apiserver's service REST ResourceLocation (kubernetes/kubernetes
    # pkg/registry/core/service/storage/storage.go:414-440, as stored in the search index): a
    # port number is turned into the declared port's name (:429-434), none declared is a 503.
    assert service_port(SERVICE, "8501")["name"] == "http"
    assert service_port(SERVICE, "grpc")["port"] == 8500
    assert service_port(SERVICE, "9000") is None
    assert service_port(SERVICE, None) is None  # two named ports: no unnamed one to default to
    pod = {"spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8501}]}]}}
    assert container_port(pod, "http") == 8501 and container_port(pod, 8080) == 8080
    assert container_port(pod, "grpc") is None


def test_weights_are_proportions_and_a_zero_weight_gets_nothing():
    chooser = Chooser(seed=1)
    picks = Counter(chooser.weighted(["stable", "canary"], [90, 10]) for _ in range(10_000))
    assert abs(picks["canary"] / 10_000 - 0.10) < 0.01, picks
    picks = Counter(chooser.weighted(["a", "b"], [3, 1]) for _ in range(10_000))  # not percentages
    assert abs(picks["a"] / 10_000 - 0.75) < 0.015, picks
    assert {chooser.weighted(["a", "b"], [0, 5]) for _ in range(100)} == {"b"}
    assert chooser.weighted(["a"], [0]) is None


def _route(name: str, matches: list[dict]) -> dict:
    return {"metadata": {"name": name, "namespace": "ml"}, "spec": {"rules": [{"matches": matches}]}}


def test_an_exact_match_wins_over_a_prefix_and_prefixes_match_whole_segments():
    prefix = _route("prefix", [{"path": {"type": "PathPrefix", "value": "/v1/models/iris"}}])
    exact = _route("exact", [{"path": {"type": "Exact", "value": "/v1/models/iris:predict"}}])
    routes = [prefix, exact]
    assert route_for(routes, "/v1/models/iris:predict")[0]["metadata"]["name"] == "exact"
    assert route_for(routes, "/v1/models/iris/labels/staging:predict")[0]["metadata"]["name"] == "prefix"
    assert route_for(routes, "/v1/models/iris")[0]["metadata"]["name"] == "prefix"
    assert route_for(routes, "/v1/models/irises") is None


def test_the_service_proxy_answers_503_without_a_ready_endpoint_and_the_gateway_its_own_503(tmp_path):
    with FakeKubeApiServer(workdir=tmp_path / "cluster") as kube:
        kube.api.create(
            resources.by_name("services"),
            "ml",
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "namespace": "ml"}, **SERVICE},
            manager="test",
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(
            f"{kube.url}/api/v1/namespaces/ml/services/x:http/proxy/v1/models/iris",
            headers={"Authorization": f"Bearer {kube.token}"},
        )
        with pytest.raises(urllib.error.HTTPError) as answer:
            opener.open(request, timeout=10)
        # storage.go:446-449: a Service with no ready address answers 503 with this message.
        assert answer.value.code == 503
        assert json.loads(answer.value.read())["message"] == 'no endpoints available for service "x"'
        # storage.go:437-439: a port number the Service does not declare.
        request.full_url = f"{kube.url}/api/v1/namespaces/ml/services/x:9000/proxy/v1/models/iris"
        with pytest.raises(urllib.error.HTTPError) as answer:
            opener.open(request, timeout=10)
        assert answer.value.code == 503
        assert json.loads(answer.value.read())["message"] == 'no service port 9000 found for service "x"'

        kube.install_gateway_api()
        with GatewayStandIn(kube, name="edge", namespace="ml") as gateway:
            with pytest.raises(urllib.error.HTTPError) as answer:
                opener.open(f"{gateway.url}/v1/models/iris", timeout=10)
            assert answer.value.code == 404  # no route attached to this Gateway
