"""Canaries on the local backend with real model servers: the canary is a second model-server
process, the router in front of both splits the environment's label URL by the weight, and
stable traffic never stops, not when the canary starts, not when its weight changes, not when
it ends. Each track is counted by its own model server (TF Serving's request_count, which
counts every /v1 request: model_servers/http_server.cc)."""

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.management import call_command
from prometheus_client.parser import text_string_to_metric_families

from deployer import local_runtime
from deployer.backends import backend_for
from deployer.backends.local import LocalProcess, _process_start, _server_command
from deployer.local_router import CANARY, STABLE
from deployer.manifests import Release
from deployer.metrics.collect import read_local
from deployer.models import Deployment
from deployer.tfserving import METRICS_PATH, REQUEST_COUNT
from registry.promotions.models import PromotionRequest
from tests.deployer_fixtures import predict_sender
from tests.test_rollout_local import promote

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


def request_count(port: int) -> int:
    """Every /v1 request this model server has counted, whatever its status."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{METRICS_PATH}", timeout=10) as response:
        return requests_counted(response.read().decode())


def requests_counted(text: str) -> int:
    """The sum of request_count in a model server's Prometheus exposition."""
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == REQUEST_COUNT
            for sample in family.samples
        )
    )


class Tracks:
    """Per-track request counts between two moments, read from each model server."""

    def __init__(self, backend):
        self.backend = backend
        self.ports = {track: port for _, track, port in backend.replicas()}
        self.before = {track: request_count(port) for track, port in self.ports.items()}

    def sent(self) -> dict[str, int]:
        return {track: request_count(port) - self.before[track] for track, port in self.ports.items()}


def send_through_label(port: int, count: int) -> list[int]:
    send = predict_sender(port)
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda _: send(ROW), range(count)))


class Hammer(threading.Thread):
    """A client calling the label URL without pause; every answer's status (or the error)."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.send = predict_sender(port)
        self.results: list = []
        self.failed_at: list[float] = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                result = self.send(ROW)
            except (urllib.error.URLError, OSError) as exc:
                result = repr(exc)
            self.results.append(result)
            if result != 200:
                self.failed_at.append(time.monotonic())

    def finish(self) -> list:
        time.sleep(0.5)  # some requests after the change, too
        self.halt.set()
        self.join(30)
        return self.results


def predictions(port: int, path: str) -> list:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}:predict",
        data=json.dumps(ROW).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["predictions"]


def no_progress(message: str) -> None:
    pass


@pytest.fixture
def live_v1(browser_client, engineer, approver, iris, staging_local, sent_tasks):
    """iris v1 live on staging (the pipeline's own rollout), and v2 exported for a canary."""
    req = promote(
        browser_client, engineer, approver, iris.versions.get(version=1), staging_local.environment, sent_tasks
    )
    assert req.state == PromotionRequest.LIVE, req.state_reason
    deployment = Deployment.objects.select_related("live_rollout__version").get(model=iris)
    backend = backend_for(deployment)
    v2 = iris.versions.get(version=2)
    stable = Release("iris", 1, "staging", deployment.live_rollout.pk, deployment.live_rollout.version.savedmodel_path)
    canary = Release("iris", 2, "staging", deployment.live_rollout.pk + 1, v2.savedmodel_path or ".", track=CANARY)
    backend.prepare(canary, v2)
    return deployment, backend, stable, canary


def test_a_canary_takes_its_weight_of_the_label_url_and_stable_never_stops(live_v1):
    deployment, backend, stable, canary = live_v1
    port = deployment.local_port
    label = "/v1/models/iris/labels/staging"
    v1_answer = predictions(port, label)

    # The canary starts at 10 % while a client calls the label URL without pause.
    hammer = Hammer(port)
    hammer.start()
    objects = backend.render_canary(stable, canary, 10)
    assert [o["kind"] for o in objects] == ["LocalModelServer", "LocalTrafficSplit"]
    backend.apply(objects)
    said = backend.wait(objects, timeout=180, progress=no_progress)
    assert "the router on port" in said and "10 % to the canary (v2)" in said
    started = hammer.finish()
    assert started and set(started) == {200}, sorted(set(map(str, started)))

    # Its own process on its own port; the public port is the router's.
    canary_port = backend.server_port(CANARY)
    assert backend.canary_pid() and canary_port not in (port, backend.server_port(STABLE))
    assert backend.router_status()["pid"] == backend.router_pid()

    # call() with the canary's release reaches the canary alone: it serves v2 and nothing else.
    tracks = Tracks(backend)
    (answer,) = backend.call(canary, "GET", "/v1/models/iris/versions/1")
    assert answer.status == 404 and answer.replica == f"127.0.0.1:{port}/canary"
    assert backend.call(canary, "POST", f"{label}:predict", ROW)[0].body["predictions"] != v1_answer
    assert tracks.sent() == {STABLE: 0, CANARY: 2}

    # 400 requests through the label URL: the canary's share is the weight, within 5 points.
    tracks = Tracks(backend)
    assert set(send_through_label(port, 400)) == {200}
    sent = tracks.sent()
    assert sum(sent.values()) == 400 and abs(sent[CANARY] / 4 - 10) <= 5, sent

    # The collector reads each model server on its own and says which track each one is.
    reading = read_local(deployment)
    assert reading.tracks == {f"127.0.0.1:{port}": STABLE, f"127.0.0.1:{port}/canary": CANARY}
    assert set(reading.counters) == set(reading.tracks) and (reading.desired, reading.ready) == (2, 2)
    health = backend.health(deployment.name)
    assert (health["desired"], health["ready"]) == (2, 2)
    assert [p["track"] for p in health["pods"]] == [STABLE, CANARY]

    # 50 %, applied while the client goes on: the same router process takes the new weight.
    router = backend.router_pid()
    hammer = Hammer(port)
    hammer.start()
    objects = backend.render_canary(stable, canary, 50)
    backend.apply(objects)
    assert "50 % to the canary" in backend.wait(objects, timeout=60, progress=no_progress)
    changed = hammer.finish()
    assert changed and set(changed) == {200}, sorted(set(map(str, changed)))
    assert backend.router_pid() == router
    tracks = Tracks(backend)
    assert set(send_through_label(port, 400)) == {200}
    sent = tracks.sent()
    assert sum(sent.values()) == 400 and abs(sent[CANARY] / 4 - 50) <= 5, sent

    # loadgen through the label exercises the split too.
    tracks = Tracks(backend)
    call_command("loadgen", "iris/staging", rps=40, duration=2, stdout=open(os.devnull, "w"))
    sent = tracks.sent()
    assert sent[STABLE] > 10 and sent[CANARY] > 10, sent

    # A router killed and started again (a redeploy of the live revision) keeps the weight.
    os.killpg(router, signal.SIGKILL)
    backend.apply(deployment.live_rollout.manifests)
    assert backend.router_pid() not in (None, router)
    assert backend.router_status()["routes"][CANARY] == {"port": canary_port, "weight": 50}
    tracks = Tracks(backend)
    assert set(send_through_label(port, 200)) == {200}
    assert abs(tracks.sent()[CANARY] / 2 - 50) <= 5

    # The end: all traffic back to stable while the client goes on, the canary gone.
    hammer = Hammer(port)
    hammer.start()
    backend.canary_end(stable, objects)
    ended = hammer.finish()
    assert ended and set(ended) == {200}, sorted(set(map(str, ended)))
    assert backend.canary_pid() is None and not backend.canary_dir.exists()
    assert backend.router_status()["routes"][CANARY] is None
    assert [track for _, track, _ in backend.replicas()] == [STABLE]
    assert all(predictions(port, label) == v1_answer for _ in range(20))
    assert read_local(deployment).tracks == {f"127.0.0.1:{port}": STABLE}
    backend.canary_end(stable, objects)  # again: what is gone is fine


def test_make_run_stops_a_canary_with_the_rest_and_brings_it_back_at_its_weight(live_v1, local_root):
    deployment, backend, stable, canary = live_v1
    objects = backend.render_canary(stable, canary, 50)
    backend.apply(objects)
    backend.wait(objects, timeout=180, progress=no_progress)
    processes = [backend.router_pid(), backend.pid(), backend.canary_pid()]

    assert local_runtime.stop_all() == [deployment.name]
    assert not any(LocalProcess(p.parent, p.stem).pid() for p in local_root.glob("**/*.pid"))
    assert not list(local_root.glob("**/*.pid"))
    assert [_process_start(pid) for pid in processes] == [None] * 3  # gone (or zombies of this test)

    assert local_runtime.start_all() == [f"{deployment} on port {deployment.local_port} (with its canary)"]
    backend.wait(objects, timeout=180, progress=no_progress)
    # `objects` are the canary's; the stable server start_all restarted opens its port once it
    # has loaded its version again (as TF Serving does), which takes longer on a busy machine.
    deadline = time.monotonic() + 180
    while True:
        try:
            tracks = Tracks(backend)
            break
        except OSError:
            assert time.monotonic() < deadline, backend.log_tail() if hasattr(backend, "log_tail") else ""
            time.sleep(0.5)
    assert set(send_through_label(deployment.local_port, 200)) == {200}
    assert abs(tracks.sent()[CANARY] / 2 - 50) <= 5
    local_runtime.stop_all()


def test_a_model_server_from_before_the_router_hands_the_address_over(live_v1, local_root):
    deployment, backend, stable, _ = live_v1
    port = deployment.local_port
    # As an older Modelgate left it: the model server itself on the public port, its pid
    # file without a port, no router.
    backend.stop()
    for leftover in ("router.json", "router.pid", "server.pid"):
        (backend.root / leftover).unlink()
    old = LocalProcess(backend.root, "server")
    old.start(_server_command(port, backend.config_path, backend.root / "monitoring.config"), port=port)
    old.pid_path.write_text(" ".join(old.pid_path.read_text().split()[:2]))
    deadline = time.monotonic() + 180
    while True:
        try:
            predictions(port, "/v1/models/iris/labels/staging")
            break
        except OSError:
            assert time.monotonic() < deadline and old.pid(), old.log_tail()
            time.sleep(0.5)
    old_pid = old.pid()

    hammer = Hammer(port)
    hammer.start()
    local_runtime.start_all()  # `make run` again, with the new code
    results = hammer.finish()

    assert backend.router_pid() and backend.pid() not in (None, old_pid)
    assert backend.server_port(STABLE) != port and _process_start(old_pid) is None  # gone (or a zombie)
    assert backend.router_status()["routes"][STABLE] == {"port": backend.server_port(STABLE)}
    # The address changed hands between two processes: only the connections that arrived in
    # that moment failed (refused, or, for one the old server had accepted into its backlog as
    # it stopped, closed without an answer; the router, waiting for the port, binds at once);
    # everything else was answered. A one-time upgrade: the router keeps the port from then on.
    refused = [r for r in results if r != 200]
    gap = hammer.failed_at[-1] - hammer.failed_at[0] if refused else 0
    print(f"handover: {len(refused)} of {len(results)} refused within {gap:.3f} s")
    assert results.count(200) > 10 and gap < 2.0, (gap, refused[:5])
    assert all("Connection re" in r or "RemoteDisconnected" in r for r in refused), refused[:5]
    assert set(send_through_label(port, 20)) == {200}
