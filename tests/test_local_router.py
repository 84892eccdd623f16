"""The local backend's router (deployer/local_router.py) as a process, in front of two stand-in
model servers that record what reaches them: it forwards requests and answers faithfully,
splits TF Serving's API by the canary's weight, takes a new weight without a restart, keeps it
across one, and never lets a client see a canary it cannot reach."""

import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from deployer.local_router import STATUS_PATH, Deck, Routes, write_routes
from tests.test_local_server import free_port

ROOT = Path(__file__).resolve().parent.parent


class StandIn:
    """A model server stand-in: records each request and answers with its own name, or with
    the status, headers and body set for a path."""

    def __init__(self, name: str):
        self.name = name
        self.seen: list[dict] = []
        self.answers: dict[str, tuple[int, list, bytes]] = {}
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                stand_in.seen.append(
                    {"method": self.command, "path": self.path, "headers": self.headers.items(), "body": body}
                )
                status, headers, data = stand_in.answers.get(
                    self.path,
                    (200, [("Content-Type", "application/json")], json.dumps({"track": stand_in.name}).encode()),
                )
                self.send_response_only(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class RouterProcess:
    def __init__(self, tmp_path: Path, routes: Routes, port: int | None = None):
        self.routes_path = tmp_path / "router.json"
        write_routes(self.routes_path, routes)
        self.port = port or free_port()
        self.log = tmp_path / "router.log"
        self.start()

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "deployer.local_router",
                    f"--listen=127.0.0.1:{self.port}",
                    f"--routes={self.routes_path}",
                ],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.status()
                return
            except OSError:
                assert self.proc.poll() is None, self.log.read_text()
                assert time.monotonic() < deadline, "the router did not listen within 30 s"
                time.sleep(0.05)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def status(self) -> dict:
        return json.loads(self.request("GET", STATUS_PATH)[2])

    def set(self, routes: Routes):
        write_routes(self.routes_path, routes)

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)


@pytest.fixture
def stand_ins():
    stable, canary = StandIn("stable"), StandIn("canary")
    yield stable, canary
    stable.close()
    canary.close()


@pytest.fixture
def router(tmp_path, stand_ins):
    stable, canary = stand_ins
    running = RouterProcess(tmp_path, Routes(stable_port=stable.port, canary_port=canary.port, canary_weight=0))
    yield running
    running.stop(signal.SIGKILL)


PREDICT = "/v1/models/iris/labels/production:predict"


def tracks_of(router, count: int) -> dict[str, int]:
    counts = {"stable": 0, "canary": 0}
    for _ in range(count):
        status, _, body = router.request("POST", PREDICT, b'{"instances": [[1.0]]}')
        assert status == 200, body
        counts[json.loads(body)["track"]] += 1
    return counts


# --- faithful forwarding ---------------------------------------------------------------


def test_a_request_reaches_the_model_server_as_the_client_sent_it(router, stand_ins):
    stable, _ = stand_ins
    body = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
    status, _, _ = router.request(
        "POST",
        f"{PREDICT}?trace=1",
        body,
        {
            "Content-Type": "application/json",
            "X-Request-ID": "abc-123",
            "Authorization": "Bearer t",
            "Connection": "X-Only-This-Hop",
            "X-Only-This-Hop": "1",
        },
    )

    assert status == 200
    (seen,) = stable.seen
    assert (seen["method"], seen["path"], seen["body"]) == ("POST", f"{PREDICT}?trace=1", body)
    headers = dict(seen["headers"])
    assert headers["Content-Type"] == "application/json" and headers["X-Request-ID"] == "abc-123"
    assert headers["Authorization"] == "Bearer t" and headers["Content-Length"] == str(len(body))
    assert headers["Host"] == f"127.0.0.1:{router.port}"  # the address the client called
    # RFC 9110 7.6.1: a header the Connection header names is for this hop only.
    assert "X-Only-This-Hop" not in headers


def test_the_answer_comes_back_as_the_model_server_gave_it(router, stand_ins):
    stable, _ = stand_ins
    error = json.dumps({"error": "Unrecognized servable version label: nope"}).encode()
    path = "/v1/models/iris/labels/nope:predict"
    stable.answers[path] = (400, [("Content-Type", "application/json"), ("X-Tf", "a"), ("X-Tf", "b")], error)

    status, headers, body = router.request("POST", path, b"{}")

    assert (status, body) == (400, error)
    assert [value for name, value in headers if name == "X-Tf"] == ["a", "b"]
    assert dict(headers)["Content-Type"] == "application/json"


def test_a_chunked_body_and_a_kept_alive_connection_are_served(router, stand_ins):
    stable, _ = stand_ins
    connection = http.client.HTTPConnection("127.0.0.1", router.port, timeout=30)
    try:
        for n in range(3):  # one connection, three requests
            connection.request("POST", PREDICT, body=iter([b'{"instances": ', f"[[{n}]]".encode(), b"}"]))
            response = connection.getresponse()
            assert response.status == 200 and json.loads(response.read()) == {"track": "stable"}
    finally:
        connection.close()
    assert [s["body"] for s in stable.seen] == [
        b'{"instances": [[0]]}',
        b'{"instances": [[1]]}',
        b'{"instances": [[2]]}',
    ]


# --- the split -------------------------------------------------------------------------


def test_every_hundred_requests_carry_exactly_the_weight_in_a_random_order():
    deck = Deck(10, random.Random(7))
    blocks = [[deck.draw() for _ in range(100)] for _ in range(5)]
    assert [sum(block) for block in blocks] == [10] * 5
    assert len({tuple(block) for block in blocks}) == 5  # shuffled afresh each time
    assert Deck(0).draw() is False and Deck(100).draw() is True


def test_the_weight_changes_without_a_restart_and_survives_one(router, stand_ins):
    stable, canary = stand_ins
    pid = router.status()["pid"]

    router.set(Routes(stable_port=stable.port, canary_port=canary.port, canary_weight=10))
    assert tracks_of(router, 400) == {"stable": 360, "canary": 40}
    router.set(Routes(stable_port=stable.port, canary_port=canary.port, canary_weight=50))
    assert tracks_of(router, 200) == {"stable": 100, "canary": 100}
    status = router.status()
    assert status["pid"] == pid, "the same process took both weights"
    assert status["requests"] == {"stable": 460, "canary": 140} and status["in_flight"] == {"stable": 0, "canary": 0}

    router.stop(signal.SIGKILL)
    router.start()
    assert router.status()["routes"]["canary"] == {"port": canary.port, "weight": 50}
    assert tracks_of(router, 100) == {"stable": 50, "canary": 50}


def test_only_tf_servings_api_is_split_the_rest_reaches_stable(router, stand_ins):
    stable, canary = stand_ins
    router.set(Routes(stable_port=stable.port, canary_port=canary.port, canary_weight=100))
    assert tracks_of(router, 5) == {"stable": 0, "canary": 5}
    for _ in range(5):
        assert json.loads(router.request("GET", "/monitoring/prometheus/metrics")[2]) == {"track": "stable"}


def test_a_canary_that_cannot_be_reached_costs_no_request(router, stand_ins, tmp_path):
    stable, canary = stand_ins
    router.set(Routes(stable_port=stable.port, canary_port=free_port(), canary_weight=50))  # nothing listens

    assert tracks_of(router, 100) == {"stable": 100, "canary": 0}
    status = router.status()
    assert status["fallbacks"] == 50 and status["requests"] == {"stable": 100, "canary": 0}


def test_without_a_stable_server_the_router_says_so(tmp_path):
    router = RouterProcess(tmp_path, Routes(stable_port=free_port()))
    try:
        status, headers, body = router.request("POST", PREDICT, b"{}")
        assert status == 503 and dict(headers)["Content-Type"] == "application/json"
        assert "cannot be reached" in json.loads(body)["error"]
    finally:
        router.stop()
    assert router.proc.returncode == 0  # SIGTERM is a clean stop


def test_an_unreadable_routes_file_keeps_the_last_good_routes(router, stand_ins):
    stable, canary = stand_ins
    router.set(Routes(stable_port=stable.port, canary_port=canary.port, canary_weight=100))
    assert tracks_of(router, 2) == {"stable": 0, "canary": 2}
    scratch = router.routes_path.with_name("broken")
    scratch.write_text('{"canary": {"port": 1, "weight": 250}}')
    os.replace(scratch, router.routes_path)
    assert tracks_of(router, 2) == {"stable": 0, "canary": 2}
    assert "unreadable, keeping the last good ones" in router.log.read_text()
