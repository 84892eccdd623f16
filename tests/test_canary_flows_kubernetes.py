"""Issue 17, "Done when", on Kubernetes: the two canary flows through the controller against the
test API server (tests/kubeapi), with real traffic, for both ways of splitting it.

- basic: two Deployments behind the one Service; clients go through the API server's service
  proxy, which sends each request to a ready endpoint of the Service chosen at random (as
  kube-apiserver does, tests/kubeapi/dataplane.py), so the canary's share is its share of the
  ready pods (canary_manifests.split_replicas);
- gateway: each track has its Service and the HTTPRoute weighs them; clients go through a
  Gateway stand-in (tests/kubeapi/gateway.py) that picks a backendRef by weight per request.

loadgen (tests/canary_flow.Traffic) sends predicts the whole time; the test plays the metrics
scraper, beat's canary controller and a worker (tests/canary_flow.CanaryDriver); the pipeline,
the analysis, the Kubernetes backend and client, MLflow and the database are the real ones. The
served split is measured from each pod's own request_count (read through the pod proxy),
grouped by the pod's `modelgate.io/track` label. Every object the pipeline applies is checked
against the Kubernetes schemas (an HTTPRoute against its CRD's)."""

import json
import math
import re
import urllib.error
import urllib.request

import pytest

from deployer import manifests as m
from deployer.backends import kubernetes_api
from deployer.canary_manifests import split_replicas
from deployer.models import Deployment, DeploymentTarget, Rollout
from deployer.services import rollout_for_promotion
from deployer.tfserving import METRICS_PATH, REST_PORT
from registry.promotions import services as promotions
from registry.promotions.models import PromotionRequest
from tests import factories
from tests.canary_fixtures import plan
from tests.canary_flow import CanaryDriver, Counts, Traffic, run_under_load
from tests.kubeapi import FakeKubeApiServer
from tests.kubeapi.fixtures import valid
from tests.kubeapi.gateway import GatewayStandIn
from tests.test_canary_local import requests_counted
from tests.test_rollout_kubernetes import fetcher, kubernetes_target

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

NAMESPACE = "ml-staging"
NAME = m.resource_name("iris", "staging")
LABEL = "v1/models/iris/labels/staging"
RPS = 35
STEPS = [{"weight": 10, "seconds": 20}, {"weight": 50, "seconds": 30}]
# A judged verdict, never an inconclusive one passed by the plan. p95 may be 3 × stable's: both
# tracks run the same kind of model in this one process on a busy 2-core machine, where a
# window's p95 moves with whatever else runs; the flows are about error rates.
PLAN = {**plan(min_requests=20, inconclusive="fail", max_p95_ratio=3.0), "steps": STEPS}
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Cluster:
    def __init__(self, kube: FakeKubeApiServer, target: DeploymentTarget, url: str, token: str | None):
        self.kube, self.target = kube, target
        self.url, self.token = url, token  # where clients send the model's paths
        self.applied: list[dict] = []  # every object the pipeline applied, in order

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict | None]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(
            f"{self.url}/{path}",
            data=json.dumps(body).encode() if body is not None else None,
            headers=headers,
            method=method,
        )
        try:
            with DIRECT.open(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as answer:
            answer.read()
            return answer.code, None

    def send(self, body: dict) -> int:
        return self.request("POST", f"{LABEL}:predict", body)[0]

    def versions(self, count: int = 30) -> set[str]:
        """The versions that answer the environment's label, over ``count`` requests."""
        found = set()
        for _ in range(count):
            status, body = self.request("GET", LABEL)
            assert status == 200 and body is not None, status
            found.add(body["model_version_status"][0]["version"])
        return found

    def pods(self, selector: str) -> list[dict]:
        return [
            p
            for p in self.kube.list("pods", NAMESPACE, label_selector=selector)
            if not p["metadata"].get("deletionTimestamp")
        ]

    def canary_objects(self) -> list[str]:
        return [
            f"{kind}/{o['metadata']['name']}"
            for kind in ("Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler")
            for o in self.kube.list(kind, NAMESPACE, label_selector=f"{m.TRACK_LABEL}=canary")
        ] + [f"Pod/{p['metadata']['name']}" for p in self.pods(f"{m.TRACK_LABEL}=canary")]


@pytest.fixture(params=["basic", "gateway"])
def cluster(request, tmp_path, staging, iris, monkeypatch):
    """A Kubernetes target for staging with 2 replicas; its clients' address is the Service
    proxy (basic) or a Gateway in front of the HTTPRoute (gateway). The pods' init container
    exports the version from this test's MLflow store."""

    gateway = request.param == "gateway"
    with FakeKubeApiServer(fetch_model=fetcher(set()), workdir=tmp_path / "cluster") as kube:
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", namespace=NAMESPACE)
        target = kubernetes_target(
            staging,
            kubeconfig,
            replicas=2,
            # Generous: pods load their SavedModel in this process, beside loadgen, the API
            # server and the model servers, on a 2-core machine other tests share.
            progress_deadline_seconds=60,
            rollout_timeout_seconds=180,
            gateway_name="edge" if gateway else "",
            gateway_namespace="gateways" if gateway else "",
        )
        if gateway:
            kube.install_gateway_api()
            with GatewayStandIn(kube, name="edge", namespace="gateways") as edge:
                found = Cluster(kube, target, edge.url, None)
                _record_applies(monkeypatch, found)
                yield found
        else:
            service = f"{kube.url}/api/v1/namespaces/{NAMESPACE}/services/{NAME}:http/proxy"
            found = Cluster(kube, target, service, kube.token)
            _record_applies(monkeypatch, found)
            yield found


def _record_applies(monkeypatch, cluster: Cluster) -> None:
    real = kubernetes_api.KubernetesApi.apply

    def apply(self, objects):
        cluster.applied.extend(objects)
        return real(self, objects)

    monkeypatch.setattr(kubernetes_api.KubernetesApi, "apply", apply)


def pod_counts(cluster: Cluster):
    """counts() for the driver: each ready pod's request_count, read through the pod proxy, with
    its track; a pod that is gone (or does not answer this time) keeps its last count."""
    known: Counts = {}
    kube = cluster.kube

    def counts() -> Counts:
        for pod in cluster.pods(f"app.kubernetes.io/instance={NAME}"):
            name = pod["metadata"]["name"]
            url = f"{kube.url}/api/v1/namespaces/{NAMESPACE}/pods/{name}:{REST_PORT}/proxy{METRICS_PATH}"
            request = urllib.request.Request(url, headers={"Authorization": f"Bearer {kube.token}"})
            try:
                with DIRECT.open(request, timeout=5) as answer:
                    count = requests_counted(answer.read().decode())
            except OSError:
                continue
            known[name] = (pod["metadata"]["labels"].get(m.TRACK_LABEL, "stable"), count)
        return dict(known)

    return counts


def _live_v1(engineer, approver, iris, cluster: Cluster, sent_tasks) -> Deployment:
    req = promotions.promotion_request(
        actor=engineer, version=iris.versions.get(version=1), environment=cluster.target.environment, justification="v1"
    )
    promotions.promotion_approve(actor=approver, request_id=req.pk, comment="ok")
    sent_tasks.run_all()  # all at once: the environment's default strategy
    req.refresh_from_db()
    assert req.state == PromotionRequest.LIVE, req.state_reason
    return Deployment.objects.get(model=iris)


def _canary(engineer, approver, version, cluster: Cluster) -> tuple[PromotionRequest, int]:
    req = promotions.promotion_request(
        actor=engineer, version=version, environment=cluster.target.environment, justification="canary"
    )
    PromotionRequest.objects.filter(pk=req.pk).update(plan=PLAN)
    promotions.promotion_approve(actor=approver, request_id=req.pk, comment="ok")
    rollout_id = rollout_for_promotion(request_id=req.pk)  # what the queued task does first
    assert rollout_id is not None
    return req, rollout_id


def canary_under_load(engineer, approver, iris, version, cluster: Cluster, sent_tasks, *, serving_after, timeout):
    """v1 live, then ``version`` as a canary with loadgen through the cluster's address from
    before it starts until 3 s after its rollout ended, the label then answering from
    ``serving_after`` alone. Returns the request, the ended rollout, the driver, the traffic
    and when the rollout was seen ended (monotonic)."""
    deployment = _live_v1(engineer, approver, iris, cluster, sent_tasks)
    assert cluster.versions() == {"1"}
    traffic = Traffic(cluster.send, iris.versions.get(version=1).signature, rps=RPS)
    driver = CanaryDriver(deployment.pk, sent_tasks, pod_counts(cluster))
    requested = []

    def start() -> int:
        req, rollout_id = _canary(engineer, approver, version, cluster)
        requested.append(req)
        return rollout_id

    def answers_from_one_version() -> None:
        assert cluster.versions() == {serving_after}

    rollout, ended = run_under_load(traffic, driver, start, timeout=timeout, after=answers_from_one_version, linger=3.0)
    req = requested[0]
    req.refresh_from_db()
    return req, rollout, driver, traffic, ended


def _alias(mlflow_store) -> str:
    return str(mlflow_store.client().get_model_version_by_alias("iris", "staging").version)


def _steps(rollout: Rollout) -> dict[str, str]:
    return {s["name"]: s["state"] for s in rollout.steps}


def _all_valid(cluster: Cluster, rollout: Rollout) -> None:
    kinds = {o["kind"] for o in cluster.applied}
    assert {"ConfigMap", "Service", "Deployment"} <= kinds, kinds
    assert ("HTTPRoute" in kinds) == (cluster.target.gateway_name != "")
    valid(cluster.applied)
    valid(rollout.canary["objects"])
    valid(rollout.manifests)


def test_a_good_canary_goes_10_then_50_percent_under_load_and_the_alias_moves_at_the_end(
    cluster, engineer, approver, iris, sent_tasks, mlflow_store
):
    req, rollout, driver, traffic, ended = canary_under_load(
        engineer, approver, iris, iris.versions.get(version=2), cluster, sent_tasks, serving_after="2", timeout=300
    )

    assert rollout.state == Rollout.LIVE, rollout.reason
    assert req.state == PromotionRequest.LIVE and _alias(mlflow_store) == "2"
    assert all(state == "done" for state in _steps(rollout).values()), rollout.steps
    verdicts = rollout.canary["verdicts"]
    assert [(v["step"], v["weight"], v["result"], v["passed"]) for v in verdicts] == [
        (0, 10, "pass", True),
        (1, 50, "pass", True),
    ], verdicts
    assert all(v["numbers"]["canary"]["requests"] >= 20 for v in verdicts), verdicts
    assert driver.weights_seen == [10, 50], driver.weights_seen

    # Stable traffic never stopped: every request of the whole flow was answered, with a 200.
    statuses = traffic.statuses()
    assert set(statuses) == {200} and statuses[200] > RPS * 40, statuses
    assert traffic.statuses(since=ended) and set(traffic.statuses(since=ended)) == {200}

    at_10, at_50 = driver.split(10), driver.split(50)
    print(f"{cluster.target.gateway_name or 'basic'}: {at_10} {at_50}")
    # Each request goes to a backend chosen at random: by the route's weights behind a Gateway
    # (as Envoy-based implementations pick a weighted cluster), or, basic, to one of the Service's
    # ready pods (the service proxy as kube-apiserver's ResourceLocation picks one: a random
    # subset and in it a random ready address, pkg/registry/core/service/storage/storage.go:451
    # and :460 in kubernetes/kubernetes as the search index holds it), so the canary's share is its share of the pods from Argo's counts (2 replicas:
    # 1 canary pod beside 2 stable ones at 10 %, 1 beside 1 at 50 %). The canary's count over n
    # requests is binomial(n, p): its share is within 4 standard deviations (100·√(p(1−p)/n)
    # points; 2.5 points at p = 1/3 and n = 600) but for 1 run in 15,000. Behind a Gateway that
    # is also within 5 points of the weight whenever n is large enough (p = 0.5, n ≥ 1,600).
    for segment in (at_10, at_50):
        if cluster.target.gateway_name:
            p = segment.weight / 100
        else:
            canary_pods, stable_pods = split_replicas(2, segment.weight)
            p = canary_pods / (canary_pods + stable_pods)
        n = sum(segment.requests.values())
        assert n > 300, segment
        tolerance = 4 * 100 * math.sqrt(p * (1 - p) / n)
        assert abs(segment.canary_share - 100 * p) <= tolerance, (segment, 100 * p, tolerance)

    # No canary object is left, and the route (with a Gateway) sends everything to stable.
    cluster.kube.wait_for(lambda: not cluster.canary_objects(), timeout=30, message="the canary's objects to go")
    if cluster.target.gateway_name:
        route = cluster.kube.get("HTTPRoute", NAMESPACE, NAME)
        assert [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]] == [(NAME, 100)]
    _all_valid(cluster, rollout)


def test_a_canary_that_answers_errors_on_real_input_aborts_at_its_first_step_and_stable_never_stops(
    cluster, engineer, approver, iris, sent_tasks, mlflow_store
):
    bad = factories.faulty_version(actor=engineer, model=iris, store=mlflow_store)
    req, rollout, driver, traffic, aborted = canary_under_load(
        engineer, approver, iris, bad, cluster, sent_tasks, serving_after="1", timeout=240
    )

    assert rollout.state == Rollout.ROLLED_BACK and req.state == PromotionRequest.ROLLED_BACK, rollout.reason
    [verdict] = rollout.canary["verdicts"]
    assert (verdict["step"], verdict["weight"], verdict["result"], verdict["passed"]) == (0, 10, "fail", False)
    # The reason quotes both error rates: every canary request failed, no stable one did.
    both = re.compile(r"canary error rate 100\.0 % \((\d+)/\1\) > stable 0\.0 % \(0/\d+\) \+ 1\.0 pp")
    for text in (verdict["reason"], rollout.reason, req.state_reason):
        assert both.search(text), text
    assert "Revision 1 (v1) serves again" in rollout.reason
    steps = _steps(rollout)
    assert steps["canary_step_0"] == "failed" and steps["restore_canary_end"] == "done"
    assert {steps[name] for name in ("canary_step_1", "promote_apply", "canary_end", "alias")} == {"skipped"}
    assert _alias(mlflow_store) == "1"
    assert driver.weights_seen == [10]

    # Stable traffic never stopped: no request went unanswered, the errors were the canary's
    # (400 on real input), and after the abort every answer is v1's 200.
    statuses = traffic.statuses()
    assert 0 not in statuses and set(statuses) <= {200, 400}, statuses
    assert statuses.get(400, 0) >= 20, statuses
    after = traffic.statuses(since=aborted + 1)
    assert after and set(after) == {200}, after

    cluster.kube.wait_for(lambda: not cluster.canary_objects(), timeout=30, message="the canary's objects to go")
    live = cluster.kube.get("Deployment", NAMESPACE, NAME)
    assert live["spec"]["replicas"] == 2
    assert live["spec"]["template"]["metadata"]["labels"]["modelgate.io/version"] == "1"
    if cluster.target.gateway_name:
        route = cluster.kube.get("HTTPRoute", NAMESPACE, NAME)
        assert [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]] == [(NAME, 100)]
    assert Deployment.objects.get(pk=rollout.deployment_id).live_rollout.version.version == 1
    _all_valid(cluster, rollout)
