"""Scraping request counters into 10 s points: from a real local model server and through the
Kubernetes pod proxy (tests/kubeapi); baselines, replicas that come and go, and the requests
counted exactly. Prometheus' query API (PROMETHEUS_URL) is tested against a real Prometheus
in test_metrics_prometheus.py."""

import json
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.utils import timezone

from deployer.backends import backend_for
from deployer.backends.local import free_port
from deployer.metrics import collect
from deployer.metrics.collect import Reading, scrape_all, scrape_deployment, scrape_record
from deployer.metrics.points import FINE, align
from deployer.models import Deployment, DeploymentTarget, MetricPoint, ScrapeState
from tests.test_metrics_retention import serving_deployments
from tests.test_rollout_kubernetes import NAMESPACE, cluster  # noqa: F401 - the cluster fixture
from tests.test_rollout_local import promote

GOOD = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode()
T0 = align(timezone.now(), FINE)


def at(seconds: int):
    return T0 + timedelta(seconds=seconds)


def counters(ok: int = 0, bad: int = 0, fast: int | None = None) -> dict:
    """One replica's raw counters (Snapshot): ``fast`` of its requests took ≤ 1 ms, the rest ≤ 2 ms."""
    fast = ok + bad if fast is None else fast
    return {
        "iris": {
            "requests": {"OK": ok, **({"INVALID_ARGUMENT": bad} if bad else {})},
            "buckets": {"1000": fast, "2000": ok + bad, "+Inf": ok + bad},
            "sum": 900.0 * (ok + bad),
            "count": ok + bad,
        }
    }


def states(deployment) -> dict:
    return dict(ScrapeState.objects.filter(deployment=deployment).values_list("replica", "counters"))


# --- recording: baselines, replicas coming and going -----------------------------


@pytest.mark.django_db
def test_a_replicas_first_read_is_only_a_baseline(staging):
    [deployment] = serving_deployments(staging)

    assert (
        scrape_record(
            deployment_id=deployment.pk, reading=Reading(counters={"a": counters(ok=50)}, ready=1), version=1, now=at(0)
        )
        is None
    )
    point = scrape_record(
        deployment_id=deployment.pk,
        reading=Reading(counters={"a": counters(ok=58, bad=2)}, ready=1, desired=1),
        version=1,
        now=at(10),
    )

    assert (point.at, point.requests, point.errors, point.version) == (at(10), 10, 2, 1)
    assert point.latency_buckets == {"1000": 10} and point.p50_ms == pytest.approx(0.5)
    assert states(deployment) == {"a": counters(ok=58, bad=2)}


@pytest.mark.django_db
def test_a_new_replica_starts_a_baseline_while_the_others_count(staging):
    [deployment] = serving_deployments(staging)
    scrape_record(deployment_id=deployment.pk, reading=Reading(counters={"a": counters(ok=5)}), version=1, now=at(0))

    point = scrape_record(
        deployment_id=deployment.pk,
        version=1,
        now=at(10),
        reading=Reading(counters={"a": counters(ok=8), "b": counters(ok=40)}, ready=2),
    )
    assert point.requests == 3
    point = scrape_record(
        deployment_id=deployment.pk,
        version=1,
        now=at(20),
        reading=Reading(counters={"a": counters(ok=9), "b": counters(ok=44)}, ready=2),
    )
    assert point.requests == 1 + 4


@pytest.mark.django_db
def test_a_replica_that_is_gone_loses_its_baseline_and_one_that_failed_keeps_it(staging):
    [deployment] = serving_deployments(staging)
    three = {"a": counters(ok=1), "b": counters(ok=1), "c": counters(ok=1)}
    scrape_record(deployment_id=deployment.pk, reading=Reading(counters=three), version=1, now=at(0))

    # c is gone; b exists but did not answer this time.
    point = scrape_record(
        deployment_id=deployment.pk,
        version=1,
        now=at(10),
        reading=Reading(counters={"a": counters(ok=3)}, present={"a", "b"}, ready=2),
    )
    assert point.requests == 2 and set(states(deployment)) == {"a", "b"}
    # b answers again: what it served meanwhile is not lost.
    point = scrape_record(
        deployment_id=deployment.pk,
        version=1,
        now=at(20),
        reading=Reading(counters={"a": counters(ok=3), "b": counters(ok=11)}, present={"a", "b"}),
    )
    assert point.requests == 10


@pytest.mark.django_db
def test_a_restarted_replica_counts_from_zero(staging):
    [deployment] = serving_deployments(staging)
    scrape_record(
        deployment_id=deployment.pk, reading=Reading(counters={"a": counters(ok=500, bad=9)}), version=1, now=at(0)
    )

    point = scrape_record(
        deployment_id=deployment.pk, reading=Reading(counters={"a": counters(ok=4, bad=1)}), version=1, now=at(10)
    )

    assert (point.requests, point.errors) == (5, 1)


@pytest.mark.django_db
def test_two_scrapes_in_one_interval_add_up_and_a_version_change_clears_its_version(staging):
    [deployment] = serving_deployments(staging, version=2)
    scrape_record(deployment_id=deployment.pk, reading=Reading(counters={"a": counters(ok=0)}), version=1, now=at(0))
    scrape_record(
        deployment_id=deployment.pk, reading=Reading(counters={"a": counters(ok=3, fast=3)}), version=1, now=at(11)
    )

    point = scrape_record(
        deployment_id=deployment.pk, reading=Reading(counters={"a": counters(ok=7, fast=3)}), version=2, now=at(17)
    )

    assert MetricPoint.objects.filter(deployment=deployment).count() == 1
    assert (point.at, point.requests, point.version) == (at(10), 7, None)
    assert point.latency_buckets == {"1000": 3, "2000": 4}
    # rank 3.5 of 7 is 0.5 into (1000, 2000] holding 4: recomputed from the summed buckets
    assert point.p50_ms == pytest.approx(1.125)


@pytest.mark.django_db
def test_a_scrape_that_read_before_the_last_one_recorded_counts_nothing(staging):
    """Two overlapping scrapes: the one that read earlier but commits later must not take its
    delta from the newer baseline (that would count requests twice, or negative)."""
    [deployment] = serving_deployments(staging)
    scrape_record(deployment_id=deployment.pk, reading=Reading(counters={"a": counters(ok=10)}), version=1, now=at(0))
    scrape_record(deployment_id=deployment.pk, reading=Reading(counters={"a": counters(ok=30)}), version=1, now=at(20))

    late = scrape_record(
        deployment_id=deployment.pk, reading=Reading(counters={"a": counters(ok=20)}), version=1, now=at(10)
    )

    assert late is None
    assert list(MetricPoint.objects.values_list("at", "requests")) == [(at(20), 20)]
    assert states(deployment)["a"] == counters(ok=30)


@pytest.mark.django_db
def test_no_replica_ready_is_recorded_as_an_outage_not_a_gap(staging):
    [deployment] = serving_deployments(staging)

    point = scrape_record(
        deployment_id=deployment.pk, reading=Reading(present={"a"}, desired=2, ready=0), version=1, now=at(0)
    )

    assert (point.requests, point.replicas_desired, point.replicas_ready) == (0, 2, 0)
    assert point.p95_ms is None


@pytest.mark.django_db
def test_one_deployment_that_fails_does_not_stop_the_others(staging, monkeypatch):
    broken, healthy = serving_deployments(staging, 2)
    healthy_reads = [Reading(counters={"a": counters(ok=0)}), Reading(counters={"a": counters(ok=2)})]

    def read(deployment, when=None):
        if deployment.pk == broken.pk:
            raise RuntimeError("boom")
        return healthy_reads.pop(0)

    monkeypatch.setattr(collect, "read_replicas", read)

    assert scrape_all(now=at(0)) == 0
    assert scrape_all(now=at(10)) == 1
    assert list(MetricPoint.objects.values_list("deployment_id", "requests")) == [(healthy.pk, 2)]


def _scrape_cycles(deployments, monkeypatch, *, canaries: bool = False) -> list[int]:
    """Three cycles over ``deployments`` (baselines, new points, a second read in the same 10 s
    plus one replica gone and one new), each one's query count. With ``canaries``, every other
    deployment also has a canary replica "k" (with traffic at each read), a track of its own."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    reads = {
        0: lambda d: Reading(counters={"a": counters(ok=1), "b": counters(ok=1)}, present={"a", "b"}, ready=2),
        10: lambda d: Reading(counters={"a": counters(ok=3), "b": counters(ok=2)}, present={"a", "b"}, ready=2),
        15: lambda d: Reading(counters={"a": counters(ok=4), "c": counters(ok=0)}, present={"a", "c"}, ready=2),
    }

    def with_canary(reading: Reading, second: int) -> Reading:
        reading.counters["k"] = counters(ok=second)
        reading.present = {*(reading.present or ()), "k"}
        reading.tracks, reading.track_replicas = {"k": "canary"}, {"canary": (1, 1)}
        return reading

    def read_at(second, read):
        def read_replicas(deployment, when=None):
            reading = read(deployment)
            return with_canary(reading, second) if canaries and deployment.pk % 2 else reading

        return read_replicas

    counts = []
    for second, read in reads.items():
        monkeypatch.setattr(collect, "read_replicas", read_at(second, read))
        with CaptureQueriesContext(connection) as queries:
            scrape_all(now=at(second))
        counts.append(len(queries.captured_queries))
    return counts


@pytest.mark.django_db
def test_a_scrape_cycle_costs_the_same_queries_for_three_deployments_as_for_thirty(staging, monkeypatch):
    few = serving_deployments(staging, 3)
    few_counts = _scrape_cycles(few, monkeypatch)
    MetricPoint.objects.all().delete()
    ScrapeState.objects.all().delete()
    many = [*few, *serving_deployments(staging, 27)]

    many_counts = _scrape_cycles(many, monkeypatch)

    # Read the deployments; then in one transaction lock them, read baselines, write the
    # baselines (create / update / delete) and read and write this interval's points. The
    # savepoint and transaction statements SQLite and PostgreSQL add are counted too.
    assert many_counts == few_counts, (few_counts, many_counts)
    assert max(many_counts) <= 10, many_counts
    assert MetricPoint.objects.filter(at=at(10)).count() == 30
    # At 10 s: (3 - 1) + (2 - 1); the read at 15 s, in the same interval, adds 4 - 3.
    assert set(MetricPoint.objects.filter(at=at(10)).values_list("requests", flat=True)) == {4}
    assert set(ScrapeState.objects.values_list("replica", flat=True)) == {"a", "c"}


@pytest.mark.django_db
def test_canaries_in_the_mix_cost_no_more_queries(staging, monkeypatch):
    few = serving_deployments(staging, 3)
    plain_counts = _scrape_cycles(few, monkeypatch)
    MetricPoint.objects.all().delete()
    ScrapeState.objects.all().delete()
    few_counts = _scrape_cycles(few, monkeypatch, canaries=True)
    MetricPoint.objects.all().delete()
    ScrapeState.objects.all().delete()
    many = [*few, *serving_deployments(staging, 27)]

    many_counts = _scrape_cycles(many, monkeypatch, canaries=True)

    assert many_counts == few_counts == plain_counts, (plain_counts, few_counts, many_counts)
    with_canary = {d.pk for d in many if d.pk % 2}
    assert 10 <= len(with_canary) <= 20
    # At 10 s each canary served 10 - 0 requests, and 15 - 10 more at 15 s in the same interval.
    canary_points = MetricPoint.objects.filter(at=at(10), track="canary")
    assert set(canary_points.values_list("deployment_id", flat=True)) == with_canary
    assert set(canary_points.values_list("requests", "replicas_ready")) == {(15, 1)}
    assert set(MetricPoint.objects.filter(at=at(10), track="stable").values_list("requests", flat=True)) == {4}
    assert MetricPoint.objects.filter(at=at(10), track="stable").count() == 30


# --- a real local model server --------------------------------------------------


def _predict(deployment, body: bytes) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{deployment.local_port}/v1/models/{deployment.model.name}:predict",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_requests_to_a_local_model_server_are_counted_exactly(
    browser_client, engineer, approver, iris, staging_local, sent_tasks
):
    promote(browser_client, engineer, approver, iris.versions.get(version=1), staging_local.environment, sent_tasks)
    deployment = Deployment.objects.get(model=iris)
    assert scrape_deployment(deployment.pk, now=at(0)) is None  # the rollout's smoke test is in the baseline

    sent = [_predict(deployment, GOOD) for _ in range(7)] + [_predict(deployment, b"not json") for _ in range(3)]
    assert sent == [200] * 7 + [400] * 3
    point = scrape_deployment(deployment.pk, now=at(10))

    assert (point.at, point.requests, point.errors, point.version) == (at(10), 10, 3, 1)
    assert (point.replicas_desired, point.replicas_ready) == (1, 1)
    # TF Serving records the latency of successful requests only (model_servers/http_server.cc).
    assert sum(point.latency_buckets.values()) == 7 and point.latency_sum_us > 0
    assert 0 < point.p50_ms <= point.p95_ms <= point.p99_ms
    assert set(states(deployment)) == {f"127.0.0.1:{deployment.local_port}"}

    assert [_predict(deployment, GOOD) for _ in range(2)] == [200, 200]
    point = scrape_deployment(deployment.pk, now=at(15))  # the same 10 s interval
    assert (point.requests, point.errors) == (12, 3)
    assert MetricPoint.objects.filter(deployment=deployment).count() == 1

    backend_for(deployment).stop()
    point = scrape_deployment(deployment.pk, now=at(20))
    assert (point.requests, point.replicas_ready) == (0, 0)
    assert len(states(deployment)) == 1  # kept: a restarted server's counters are read as a reset


# --- Kubernetes, through the API server's pod proxy ----------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_each_pod_is_scraped_through_the_pod_proxy_and_their_requests_summed(
    cluster, browser_client, engineer, approver, iris, sent_tasks, settings
):  # noqa: F811
    settings.PROMETHEUS_URL = ""
    DeploymentTarget.objects.filter(pk=cluster.target.pk).update(replicas=2)
    promote(browser_client, engineer, approver, iris.versions.get(version=1), cluster.target.environment, sent_tasks)
    deployment = Deployment.objects.get(model=iris)
    client = backend_for(deployment).client
    pods = client.serving_pods(deployment.name)
    assert len(pods) == 2
    assert scrape_deployment(deployment.pk, now=at(0)) is None
    assert set(states(deployment)) == set(pods)

    path = "/v1/models/iris:predict"
    body = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
    answers = [client.proxy(pods[0], "POST", path, body)[0] for _ in range(3)]
    answers += [client.proxy(pods[1], "POST", path, body)[0] for _ in range(2)]
    answers += [client.proxy(pods[1], "POST", path, {"instances": []})[0]]
    assert answers == [200] * 5 + [400]
    point = scrape_deployment(deployment.pk, now=at(10))

    assert (point.requests, point.errors, point.version) == (6, 1, 1)
    assert (point.replicas_desired, point.replicas_ready) == (2, 2)
    assert sum(point.latency_buckets.values()) == 5  # the latency of successful requests only

    # Scaled down to one pod: the removed pod's baseline goes with it.
    cluster.server.edit("Deployment", NAMESPACE, deployment.name, lambda obj: obj["spec"].update(replicas=1))
    cluster.server.wait_for(lambda: len(cluster.server.list("Pod", NAMESPACE)) == 1, timeout=30)
    scrape_deployment(deployment.pk, now=at(20))
    assert set(states(deployment)) == set(client.serving_pods(deployment.name)) and len(states(deployment)) == 1
    client.close()


# --- Prometheus' query API ----------------------------------------------------------------


@pytest.fixture
def unreachable_kubeconfig(tmp_path):
    """A cluster whose API server does not answer: replica counts stay unknown."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "test",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u", "namespace": NAMESPACE}}],
            }
        )
    )
    return path


def out_of_reach_deployment(environment, kubeconfig) -> Deployment:
    """A deployment serving on a Kubernetes target whose API server does not answer."""
    [deployment] = serving_deployments(
        environment,
        backend=DeploymentTarget.KUBERNETES,
        namespace=NAMESPACE,
        kubeconfig_path=str(kubeconfig),
        kube_context="test",
    )
    return deployment


@pytest.mark.django_db
def test_prometheus_that_does_not_answer_records_nothing(staging, unreachable_kubeconfig, settings):
    settings.PROMETHEUS_URL = f"http://127.0.0.1:{free_port()}"
    deployment = out_of_reach_deployment(staging, unreachable_kubeconfig)

    assert scrape_deployment(deployment.pk, now=at(0)) is None
    assert scrape_all(now=at(10)) == 0
    assert not MetricPoint.objects.exists() and not ScrapeState.objects.exists()
