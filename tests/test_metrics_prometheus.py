"""PROMETHEUS_URL mode against a real Prometheus (tests/prometheus.py) scraping development
model servers every second, labelled as a Kubernetes Deployment's pods: the collector's
PromQL selects the right series, counts requests exactly, survives a replica that goes stale
and one that restarts (counter reset), and Prometheus' own increase() and
histogram_quantile() agree with the console's arithmetic over the same window."""

import json
import math
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime

import pytest
from django.db.models import Sum
from django.utils import timezone

from deployer.backends.local import free_port
from deployer.export import export_version
from deployer.manifests import monitoring_config
from deployer.metrics import promql
from deployer.metrics.arithmetic import add_buckets, parse, quantile, to_interval
from deployer.metrics.collect import prometheus_counters, scrape_deployment
from deployer.models import MetricPoint, ScrapeState
from deployer.tfserving import METRICS_PATH, REQUEST_COUNT
from tests.prometheus import SCRAPE_INTERVAL, needs_prometheus, prometheus  # noqa: F401 - a fixture
from tests.test_metrics_collect import out_of_reach_deployment, unreachable_kubeconfig  # noqa: F401 - a fixture
from tests.test_rollout_kubernetes import NAMESPACE

pytestmark = [pytest.mark.django_db, pytest.mark.slow, needs_prometheus]
GOOD = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
BAD = {"instances": [[5.1, 3.5]]}  # the wrong shape: a 400 counted with a status other than OK


class DevServer:
    """``python -m tfserving_dev`` with TF Serving's flags, as a pod's container runs
    tensorflow_model_server; stopped and started again on the same port to restart it."""

    def __init__(self, workdir, model_root):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        workdir.mkdir()
        self.config, self.monitoring = workdir / "models.config", workdir / "monitoring.config"
        self.config.write_text(
            f'model_config_list {{ config {{ name: "iris" base_path: "{model_root}/iris" '
            f'model_platform: "tensorflow" }} }}\n'
        )
        self.monitoring.write_text(monitoring_config())
        self.process = None

    def start(self) -> "DevServer":
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tfserving_dev",
                "--rest_api_host=127.0.0.1",
                f"--rest_api_port={self.port}",
                f"--model_config_file={self.config}",
                f"--monitoring_config_file={self.monitoring}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while not self._available():  # polled once a second: status calls are /v1 requests too
            assert self.process.poll() is None and time.monotonic() < deadline, "the model server did not load iris"
            time.sleep(1)
        return self

    def _available(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.address}/v1/models/iris", timeout=5) as response:
                return any(v["state"] == "AVAILABLE" for v in json.loads(response.read())["model_version_status"])
        except (OSError, ValueError):
            return False

    def predict(self, body: dict) -> int:
        request = urllib.request.Request(
            f"http://{self.address}/v1/models/iris:predict",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def counters(self) -> dict:
        """Its own exposition, read directly (what a direct scrape would see)."""
        with urllib.request.urlopen(f"http://{self.address}{METRICS_PATH}", timeout=5) as response:
            return parse(response.read().decode())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


@pytest.fixture
def servers(tmp_path, iris):
    """Two development model servers serving iris v1."""
    root = tmp_path / "models"
    export_version(iris.versions.get(version=1), root)
    started = [DevServer(tmp_path / name, root) for name in ("a", "b")]
    yield started
    for server in started:
        server.stop()


def _epoch(moment: datetime) -> float:
    return moment.astimezone(UTC).timestamp()


def test_prometheus_url_mode_against_a_real_prometheus(prometheus, staging, servers, unreachable_kubeconfig, settings):  # noqa: F811
    settings.PROMETHEUS_URL = prometheus.url
    deployment = out_of_reach_deployment(staging, unreachable_kubeconfig)
    a, b = servers
    pod_a, pod_b = f"{deployment.name}-5d9c7b8f4-x2k8p", f"{deployment.name}-5d9c7b8f4-q7w4z"
    for server in servers:
        server.start()
        # Every series a request creates exists before the window opens: a series born inside
        # a window loses its first increment to increase() (Prometheus cannot tell it from 0).
        assert (server.predict(GOOD), server.predict(BAD)) == (200, 400)
    prometheus.set_targets(
        [
            (a.address, {"namespace": NAMESPACE, "pod": pod_a}),
            (b.address, {"namespace": NAMESPACE, "pod": pod_b}),
            # Another Deployment whose name starts with this one's (not its canary, `-canary`, whose
            # pods the query covers since canaries exist).
            (a.address, {"namespace": NAMESPACE, "pod": f"{deployment.name}-shadow-7f9c-abcde"}),
            (b.address, {"namespace": "elsewhere", "pod": pod_b}),  # the same pod name in another namespace
        ]
    )

    def seen(pod: str, server: DevServer) -> bool:
        """Prometheus has scraped the pod since its last request."""
        expected = sum(sum(model["requests"].values()) for model in server.counters().values())
        return prometheus.value(f'sum({REQUEST_COUNT}{{namespace="{NAMESPACE}",pod="{pod}"}})') == expected

    def requests_recorded() -> tuple[int, int]:
        totals = MetricPoint.objects.filter(deployment=deployment).aggregate(Sum("requests"), Sum("errors"))
        return totals["requests__sum"] or 0, totals["errors__sum"] or 0

    prometheus.wait_for(lambda: seen(pod_a, a) and seen(pod_b, b), message="Prometheus scraped nothing")
    time.sleep(1.5 * SCRAPE_INTERVAL)  # no traffic at the window's edge: both sides start from the same sample

    start = timezone.now()
    assert scrape_deployment(deployment.pk, now=start) is None  # a baseline per pod, nothing to count yet
    assert set(ScrapeState.objects.filter(deployment=deployment).values_list("replica", flat=True)) == {pod_a, pod_b}
    time.sleep(1.5 * SCRAPE_INTERVAL)  # and after it: Prometheus' first sample in the window holds no traffic either

    # Traffic, read back through Prometheus: exactly what was sent, errors apart.
    sent = [a.predict(GOOD) for _ in range(7)] + [a.predict(BAD) for _ in range(3)]
    sent += [b.predict(GOOD) for _ in range(60)]
    assert sent.count(200) == 67 and sent.count(400) == 3
    prometheus.wait_for(lambda: seen(pod_a, a) and seen(pod_b, b))
    point = scrape_deployment(deployment.pk, now=timezone.now())
    assert point is not None and requests_recorded() == (70, 3)
    assert point.p95_ms > 0 and (point.replicas_desired, point.replicas_ready) == (None, None)  # no API server

    # b stops: at its next failed scrape Prometheus marks its series stale, so an instant query
    # no longer returns them (without staleness it would for 5 minutes). With no pod list from
    # the API server, b's baseline is kept; a still counts.
    b.stop()
    query = promql.pod_counters(NAMESPACE, deployment.name)
    prometheus.wait_for(
        lambda: set(prometheus_counters(prometheus.url, query, None)) == {pod_a}, message="b's series did not go stale"
    )
    assert [a.predict(GOOD) for _ in range(2)] == [200, 200]
    prometheus.wait_for(lambda: seen(pod_a, a))
    scrape_deployment(deployment.pk, now=timezone.now())
    assert requests_recorded() == (72, 3)
    assert set(ScrapeState.objects.filter(deployment=deployment).values_list("replica", flat=True)) == {pod_a, pod_b}

    # b restarts on the same address: its counters start again from zero (a reset), so all it
    # counts now is new, as a direct scrape of it would find.
    b.start()
    assert [b.predict(GOOD) for _ in range(3)] == [200] * 3
    prometheus.wait_for(lambda: seen(pod_b, b), message="Prometheus did not scrape b again")
    since_restart = to_interval(b.counters())
    scrape_deployment(deployment.pk, now=timezone.now())
    assert requests_recorded() == (72 + since_restart.requests, 3 + since_restart.errors)
    assert (
        prometheus.value(f'sum(resets({REQUEST_COUNT}{{namespace="{NAMESPACE}",pod="{pod_b}",status="OK"}}[5m]))') == 1
    )

    time.sleep(1.5 * SCRAPE_INTERVAL)
    end = timezone.now()
    scrape_deployment(deployment.pk, now=end)
    requests, errors = requests_recorded()

    # Over the same window, Prometheus' functions agree with the console's arithmetic.
    # increase() starts and ends on the same samples as the console's reads (no traffic at the
    # edges), then stretches each series to the window's edges: by at most the gap to the edge,
    # one scrape interval (two, should a scrape be missed on a loaded machine), at either end.
    # So every count lies between the console's and `stretch` times it.
    seconds = _epoch(end) - _epoch(start)
    window, stretch = f"{round(seconds * 1000)}ms", seconds / (seconds - 4 * SCRAPE_INTERVAL)
    at = _epoch(end)
    prom_requests = prometheus.value(promql.requests(NAMESPACE, deployment.name, window), at)
    prom_errors = prometheus.value(promql.requests(NAMESPACE, deployment.name, window, errors=True), at)
    assert requests <= prom_requests + 1e-9 <= requests * stretch + 1e-6, (requests, prom_requests, stretch)
    assert errors <= prom_errors + 1e-9 <= errors * stretch + 1e-6, (errors, prom_errors, stretch)

    # Percentiles: histogram_quantile over increase() of the summed buckets. Each cumulative
    # bucket (requests at or below a bound) and the total are stretched by their own factor in
    # [1, stretch], so at any latency Prometheus' share of requests at or below it is within a
    # factor `stretch` of the console's, and its q-quantile lies between the console's
    # (q / stretch)- and (q * stretch)-quantiles; with q * stretch >= 1 there is no upper bound
    # (a bucket above the console's highest may gain a fraction). Not tighter in the tail: the
    # buckets are stretched separately, so the few requests above p95 may gain or lose a fraction.
    buckets = add_buckets(*MetricPoint.objects.filter(deployment=deployment).values_list("latency_buckets", flat=True))
    for q in (0.5, 0.95, 0.99):
        low = quantile(q / stretch, buckets)
        high = quantile(q * stretch, buckets) if q * stretch < 1 else math.inf
        prom_ms = prometheus.value(promql.latency_quantile(q, NAMESPACE, deployment.name, window), at) / 1000
        assert low - 1e-9 <= prom_ms <= high + 1e-9, (q, low, quantile(q, buckets), prom_ms, high, buckets)


def test_without_the_api_server_a_canary_pods_counters_stay_on_the_canary_track(
    prometheus,  # noqa: F811
    staging,
    servers,
    unreachable_kubeconfig,
    settings,
):
    """PROMETHEUS_URL mode with the API server out of reach: the pod list and its track labels
    are unknown, so the pod's name tells the canary's counters apart (``<name>-canary-<hash>-…``).
    Were they added to stable's, a failing canary's errors would raise the very stable error rate
    it is judged against."""
    settings.PROMETHEUS_URL = prometheus.url
    deployment = out_of_reach_deployment(staging, unreachable_kubeconfig)
    stable, canary = servers
    pods = {stable: f"{deployment.name}-5d9c7b8f4-x2k8p", canary: f"{deployment.name}-canary-7c6b5d4f9-m3n8q"}
    for server in servers:
        server.start()
        assert (server.predict(GOOD), server.predict(BAD)) == (200, 400)
    prometheus.set_targets([(server.address, {"namespace": NAMESPACE, "pod": pod}) for server, pod in pods.items()])

    def seen(server: DevServer) -> bool:
        expected = sum(sum(model["requests"].values()) for model in server.counters().values())
        return prometheus.value(f'sum({REQUEST_COUNT}{{namespace="{NAMESPACE}",pod="{pods[server]}"}})') == expected

    prometheus.wait_for(lambda: seen(stable) and seen(canary), message="Prometheus scraped nothing")
    assert scrape_deployment(deployment.pk, now=timezone.now()) is None  # baselines
    assert [stable.predict(GOOD) for _ in range(20)] == [200] * 20
    assert [canary.predict(BAD) for _ in range(5)] == [400] * 5
    prometheus.wait_for(lambda: seen(stable) and seen(canary))
    scrape_deployment(deployment.pk, now=timezone.now())

    by_track = {
        row["track"]: (row["requests__sum"], row["errors__sum"])
        for row in MetricPoint.objects.filter(deployment=deployment)
        .values("track")
        .annotate(Sum("requests"), Sum("errors"))
    }
    assert by_track == {"stable": (20, 0), "canary": (5, 5)}
