"""A canary's manifests on Kubernetes (deployer/canary_manifests.py): pure functions, every object
valid (core objects against the Kubernetes schemas with kubernetes-validate, strict; the
HTTPRoute against the Gateway API v1 CRD's schema, tests/schemas/gateway-api), at the weights and
replica counts a plan uses.

The basic split's pod counts, Argo Rollouts' canary without a traffic router
(utils/replicaset/canary.go, approximateWeightedCanaryStableReplicaCounts, line 183 at commit
5b40f08): for `replicas` R and weight w, the candidates are ceil(R·w/100) and floor(R·w/100)
canary pods out of R or R + 1 in all (never 0 canary pods, never 0 stable ones); the nearest to
w wins, the first of equals. The canary's share of the traffic is its share of the pods:

    R   weight 10            weight 50
    1   1 + 1 stable = 50 %   1 + 1 = 50 %
    2   1 + 2 = 33 %          1 + 1 = 50 %
    3   1 + 3 = 25 %          2 + 2 = 50 %
    4   1 + 4 = 20 %          2 + 2 = 50 %
    5   1 + 5 = 17 %          3 + 3 = 50 %

With a Gateway the route's weights are exact, the stable Deployment keeps its R pods and the
canary gets ceil(R·w/100) (Argo's traffic-routed canary without dynamic stable scaling).
"""

import copy

import jsonschema
import kubernetes_validate
import pytest

from deployer import canary_manifests as c
from deployer import manifests as m
from tests.kubeapi import crds

K8S_VERSION = "1.33.0"
TARGET = m.Target(
    namespace="ml-prod",
    image="tensorflow/serving:2.19.0",
    fetcher_image="ghcr.io/acme/mlflow:3.5",
    mlflow_tracking_uri="http://mlflow:5000",
    replicas=3,
    extra_labels={"team": "search"},
)
GATEWAY = m.Target(**{**TARGET.__dict__, "gateway": m.Gateway(name="edge", namespace="gateways")})
STABLE = m.Release(model="iris", version=4, environment="production", rollout_id=40, savedmodel_path="tf2model")
CANARY = m.Release(model="iris", version=5, environment="production", rollout_id=41, savedmodel_path="tf2model")
NAME = "tfs-iris-production"
SPLITS = {
    (1, 10): (1, 1),
    (1, 50): (1, 1),
    (2, 10): (1, 2),
    (2, 50): (1, 1),
    (3, 10): (1, 3),
    (3, 50): (2, 2),
    (4, 10): (1, 4),
    (4, 50): (2, 2),
    (5, 10): (1, 5),
    (5, 50): (3, 3),
}


def target(base: m.Target = TARGET, **changes) -> m.Target:
    return m.Target(**{**base.__dict__, **changes})


def check(objects: list[dict]) -> None:
    for obj in objects:
        if obj["kind"] == "HTTPRoute":
            crds.validate(obj)
        else:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def by_name(objects: list[dict]) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("replicas, weight", sorted(SPLITS))
def test_a_basic_canary_gets_argos_pod_counts_and_every_object_is_valid(replicas, weight):
    objects = c.render_canary(target(replicas=replicas), STABLE, CANARY, weight)
    check(objects)
    found = by_name(objects)
    canary, stable = SPLITS[(replicas, weight)]
    assert c.split_replicas(replicas, weight) == (canary, stable)
    assert found[("Deployment", f"{NAME}-canary")]["spec"]["replicas"] == canary
    assert found[("Deployment", NAME)]["spec"]["replicas"] == stable
    # Never more than one pod above the target's count (the Deployments' surge), never none on a side.
    assert replicas <= canary + stable <= replicas + 1 and canary >= 1 and stable >= 1
    assert [o["kind"] for o in objects] == ["ConfigMap", "Deployment", "Service", "Deployment"]


@pytest.mark.parametrize("replicas, weight", sorted(SPLITS))
def test_a_gateway_canary_is_weighted_by_its_route_and_the_stable_pods_stay(replicas, weight):
    objects = c.render_canary(target(GATEWAY, replicas=replicas), STABLE, CANARY, weight)
    check(objects)
    found = by_name(objects)
    route = found[("HTTPRoute", NAME)]
    (rule,) = route["spec"]["rules"]
    assert [(b["name"], b["weight"]) for b in rule["backendRefs"]] == [(NAME, 100 - weight), (f"{NAME}-canary", weight)]
    assert found[("Deployment", f"{NAME}-canary")]["spec"]["replicas"] == -(-replicas * weight // 100)
    assert ("Deployment", NAME) not in found  # the stable Deployment is not touched
    assert route["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "edge", "namespace": "gateways"}
    ]


def test_the_route_sends_the_models_rest_paths_to_the_stable_service_outside_a_canary():
    objects = m.render(GATEWAY, STABLE)
    check(objects)
    route = by_name(objects)[("HTTPRoute", NAME)]
    (rule,) = route["spec"]["rules"]
    assert [(b["kind"], b["name"], b["port"], b["weight"]) for b in rule["backendRefs"]] == [
        ("Service", NAME, 8501, 100)
    ]
    assert {(p["path"]["type"], p["path"]["value"]) for p in rule["matches"]} == {
        ("PathPrefix", "/v1/models/iris"),
        ("Exact", "/v1/models/iris:predict"),
        ("Exact", "/v1/models/iris:classify"),
        ("Exact", "/v1/models/iris:regress"),
    }
    # A Gateway in the route's own namespace is named without one.
    same = m.render(target(GATEWAY, gateway=m.Gateway(name="edge", namespace="ml-prod")), STABLE)[-1]
    assert same["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "edge"}]


def test_a_field_the_httproute_schema_does_not_declare_fails_validation():
    route = copy.deepcopy(m.render(GATEWAY, STABLE)[-1])
    route["spec"]["rules"][0]["backendRefs"][0]["weigth"] = 5
    with pytest.raises(jsonschema.ValidationError, match="'weigth' was unexpected"):
        crds.validate(route)
    route = copy.deepcopy(m.render(GATEWAY, STABLE)[-1])
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = 1_000_001
    with pytest.raises(jsonschema.ValidationError, match="maximum"):
        crds.validate(route)
    route = copy.deepcopy(m.render(GATEWAY, STABLE)[-1])
    route["metadata"]["lables"] = {"team": "search"}
    with pytest.raises(jsonschema.ValidationError, match="'lables' was unexpected"):
        crds.validate(route)  # metadata is ObjectMeta, checked strictly too


def test_canary_pods_are_outside_the_stable_selector_and_inside_the_one_service():
    objects = by_name(c.render_canary(TARGET, STABLE, CANARY, 10))
    stable, canary = objects[("Deployment", NAME)], objects[("Deployment", f"{NAME}-canary")]
    stable_selector = stable["spec"]["selector"]["matchLabels"]
    # The selector every stable Deployment has had: immutable, so never changed.
    assert stable_selector == {"app.kubernetes.io/instance": NAME, "app.kubernetes.io/managed-by": "modelgate"}
    stable_pod = stable["spec"]["template"]["metadata"]["labels"]
    canary_pod = canary["spec"]["template"]["metadata"]["labels"]
    assert not selects(stable_selector, canary_pod)
    assert not selects(canary["spec"]["selector"]["matchLabels"], stable_pod)
    service = objects[("Service", NAME)]["spec"]["selector"]
    assert selects(service, stable_pod) and selects(service, canary_pod)
    assert (stable_pod["modelgate.io/track"], canary_pod["modelgate.io/track"]) == ("stable", "canary")
    assert (stable_pod["modelgate.io/version"], canary_pod["modelgate.io/version"]) == ("4", "5")


def test_with_a_gateway_each_service_selects_its_own_track():
    objects = by_name(c.render_canary(GATEWAY, STABLE, CANARY, 10))
    canary_pod = objects[("Deployment", f"{NAME}-canary")]["spec"]["template"]["metadata"]["labels"]
    stable_pod = m.deployment(GATEWAY, STABLE)["spec"]["template"]["metadata"]["labels"]
    stable_service = objects[("Service", NAME)]["spec"]["selector"]
    canary_service = objects[("Service", f"{NAME}-canary")]["spec"]["selector"]
    assert selects(stable_service, stable_pod) and not selects(stable_service, canary_pod)
    assert selects(canary_service, canary_pod) and not selects(canary_service, stable_pod)
    assert stable_service == m.render(GATEWAY, STABLE)[1]["spec"]["selector"]  # as outside a canary


def test_the_stable_deployment_changes_in_its_replica_count_only_so_no_stable_pod_is_replaced():
    during = by_name(c.render_canary(target(replicas=4), STABLE, CANARY, 50))[("Deployment", NAME)]
    before = by_name(m.render(target(replicas=4), STABLE))[("Deployment", NAME)]
    assert (before["spec"]["replicas"], during["spec"]["replicas"]) == (4, 2)
    during["spec"]["replicas"] = before["spec"]["replicas"]
    assert during == before
    assert c.stable_traffic(target(replicas=4), STABLE) == [before]  # what canary_end applies


def test_the_canary_has_its_own_config_map_so_ending_it_keeps_the_promoted_versions():
    promoted = by_name(m.render(TARGET, CANARY))  # the canary's version, made stable
    canary = by_name(c.render_canary(TARGET, STABLE, CANARY, 10))
    (canary_config,) = [name for kind, name in canary if kind == "ConfigMap"]
    (stable_config,) = [name for kind, name in promoted if kind == "ConfigMap"]
    assert (canary_config, stable_config) == (f"{NAME}-canary-v5", f"{NAME}-v5")
    volumes = canary[("Deployment", f"{NAME}-canary")]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "config", "configMap": {"name": canary_config}} in volumes
    config = canary[("ConfigMap", canary_config)]["data"]["models.config"]
    assert 'version_labels { key: "production" value: 5 }' in config  # the label URL reaches it


def test_canary_end_deletes_the_canary_track_only():
    objects = c.render_canary(GATEWAY, STABLE, CANARY, 50)
    gone = c.canary_objects(GATEWAY, STABLE, objects)
    assert sorted((o["kind"], o["metadata"]["name"]) for o in gone) == [
        ("ConfigMap", f"{NAME}-canary-v5"),
        ("Deployment", f"{NAME}-canary"),
        ("Service", f"{NAME}-canary"),
    ]
    # Without the rendered objects (never stored), the Deployment and Service still go by name.
    assert sorted((o["kind"], o["metadata"]["name"]) for o in c.canary_objects(GATEWAY, STABLE, [])) == [
        ("Deployment", f"{NAME}-canary"),
        ("Service", f"{NAME}-canary"),
    ]
    assert [(o["kind"], o["spec"]["rules"][0]["backendRefs"]) for o in c.stable_traffic(GATEWAY, STABLE)] == [
        ("HTTPRoute", [{"group": "", "kind": "Service", "name": NAME, "port": 8501, "weight": 100}])
    ]


def test_an_autoscaled_target_leaves_the_stable_replicas_to_its_hpa():
    scaled = target(autoscaling=m.Autoscaling(min_replicas=4, max_replicas=8))
    objects = c.render_canary(scaled, STABLE, CANARY, 50)
    check(objects)
    assert [(o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] == "Deployment"] == [
        ("Deployment", f"{NAME}-canary")
    ]
    assert objects[1]["spec"]["replicas"] == 2  # from the HPA's minimum of 4


@pytest.mark.parametrize(
    "change, words",
    [
        ({"weight": 0}, "weight is 1..99"),
        ({"weight": 100}, "weight is 1..99"),
        ({"replicas": 0}, "at least one replica"),
        ({"canary": m.Release(**{**CANARY.__dict__, "model": "wine"})}, "same model"),
        ({"gateway": m.Gateway(name="Edge_GW")}, "Gateway name 'Edge_GW'"),
    ],
)
def test_what_cannot_be_a_canary_is_refused(change, words):
    arguments = {"weight": 10, "canary": CANARY, **change}
    spec = target(
        **{k: v for k, v in change.items() if k in ("replicas", "gateway")},
    )
    with pytest.raises(m.ManifestError, match=words):
        c.render_canary(spec, STABLE, arguments["canary"], arguments["weight"])
