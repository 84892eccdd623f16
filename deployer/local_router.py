"""The local backend's traffic router: a small HTTP proxy in front of a deployment's model
servers, which splits the environment's address between the stable track and a canary.

``python -m deployer.local_router --listen=127.0.0.1:<port> --routes=<dir>/router.json``

Why a router that is always there: the environment's address (``Deployment.local_port``,
what clients, the deployment page and ``manage.py loadgen`` call) must keep answering while a
canary starts, while its weight changes and when it ends. Two model servers cannot share one
port, and the real ``tensorflow_model_server`` cannot be asked to hand its port over, so the
public port belongs to this router from the first rollout on, and the model servers listen on
internal ports: the stable one always, the canary's while there is one. Starting a canary,
changing its weight and ending it then never touch the public socket. The price is one
loopback hop per request; the latencies the console charts are the model servers' own.

How it routes:

- The routes (each track's internal port and the canary's weight) are a JSON file the local
  backend writes atomically (``write_routes``). The router re-reads it whenever the file
  changes (one ``stat`` per request), so a new weight applies from the next request, with no
  restart and nothing listening on a second port; and a restarted router routes as before.
- Only TF Serving's API (``/v1/...``) is split: every other path, such as the Prometheus
  metrics, reaches the stable server, so scraping the public address stays deterministic
  (Modelgate reads each model server's metrics on its own port).
- Weighted random per request, drawn from a shuffled deck of 100 cards of which ``weight``
  say canary: each request's track is random, and every 100 requests carry exactly the weight.
  Plain independent draws would wander: at 50 % over 100 requests one run in three is more
  than 5 points off, which would blur the per-track comparison a canary step is judged by.
- A track that cannot be reached (nothing listening: a canary still loading, since TF Serving
  opens its REST port only after the initial load, model_servers/server.cc BuildAndStart; a
  canary being stopped) is never an error the client sees: a request that could not even
  connect goes to the stable server instead (counted as a fallback). Anything a model server
  answers, errors included, is passed on as it is.
- A request is forwarded as it came (method, path and query, body, end-to-end headers) and
  the answer returned as it came (status, reason, end-to-end headers, body); hop-by-hop
  headers (RFC 9110 section 7.6.1) are the proxy's own. Connections to the model servers are
  kept alive per client connection; a kept-alive connection the server closed meanwhile is
  reopened once.
- ``GET /-/router`` (a path TF Serving does not serve) answers the routes in force and the
  requests sent to each track, with those in flight: the backend waits on it before it stops
  a canary, so no request is cut off when a canary ends.

This module is a program of its own: it imports only the standard library (an import-linter
contract in pyproject.toml and tests/test_architecture.py hold it to that), so it starts in a
fraction of a second and never needs Django, the database or TensorFlow.
"""

import argparse
import errno
import http.client
import json
import logging
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType

STABLE, CANARY = "stable", "canary"
STATUS_PATH = "/-/router"
SPLIT_PREFIX = "/v1/"
# TF Serving's REST server gives a request up to 30 s by default (--rest_api_timeout_in_ms);
# a model server that is slower than this is broken, not busy.
BACKEND_TIMEOUT = 120.0
# An idle kept-alive client connection is closed after this long (it holds a thread).
IDLE_TIMEOUT = 120.0
# RFC 9110 section 7.6.1: meaningful for one connection only, never forwarded. Content-Length
# is recomputed for the body as forwarded, Expect is answered here.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    }
)

log = logging.getLogger("deployer.local_router")


# --- the routes file -----------------------------------------------------------------


@dataclass(frozen=True)
class Routes:
    """Where each track listens (None: no such server) and the canary's share in percent."""

    stable_port: int | None = None
    canary_port: int | None = None
    canary_weight: int = 0

    def __post_init__(self) -> None:
        for port in (self.stable_port, self.canary_port):
            if port is not None and not (isinstance(port, int) and 0 < port < 65536):
                raise ValueError(f"not a port: {port!r}")
        if not (isinstance(self.canary_weight, int) and 0 <= self.canary_weight <= 100):
            raise ValueError(f"the canary's weight must be a whole number from 0 to 100, not {self.canary_weight!r}")

    def to_dict(self) -> dict:
        return {
            STABLE: None if self.stable_port is None else {"port": self.stable_port},
            CANARY: None
            if self.canary_port is None and not self.canary_weight
            else {"port": self.canary_port, "weight": self.canary_weight},
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Routes":
        if not isinstance(data, dict):
            raise ValueError("the routes are not a JSON object")
        stable = data.get(STABLE) or {}
        canary = data.get(CANARY) or {}
        return cls(
            stable_port=stable.get("port"), canary_port=canary.get("port"), canary_weight=canary.get("weight", 0)
        )

    def describe(self) -> str:
        stable = f"stable on :{self.stable_port}" if self.stable_port else "no stable server"
        if self.canary_port is None or not self.canary_weight:
            return f"all to {stable}"
        return f"{100 - self.canary_weight} % to {stable}, {self.canary_weight} % to the canary on :{self.canary_port}"


def read_routes(path: Path) -> Routes | None:
    """The routes in the file, or None when there is none. Raises ValueError if unreadable."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    return Routes.from_dict(json.loads(text))


def write_routes(path: Path, routes: Routes) -> None:
    """Atomically: the router reads the file on every change and must never see half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.write_text(json.dumps(routes.to_dict(), indent=1) + "\n")
    os.replace(scratch, path)


# --- choosing a track ------------------------------------------------------------------


class Deck:
    """Weighted random without replacement: 100 cards, ``weight`` of them canary, shuffled;
    a fresh deck when one runs out. Not thread-safe (the router holds its lock)."""

    SIZE = 100

    def __init__(self, weight: int, rng: random.Random | None = None):
        self.weight = weight
        self._rng = rng or random.Random()
        self._cards: list[bool] = []

    def draw(self) -> bool:
        """True: this request goes to the canary."""
        if not self._cards:
            self._cards = [True] * self.weight + [False] * (self.SIZE - self.weight)
            self._rng.shuffle(self._cards)
        return self._cards.pop()


class Router:
    """The routing state shared by the request threads: the routes (re-read when the file
    changes), the deck, and per-track counts."""

    def __init__(self, routes_path: Path, rng: random.Random | None = None):
        self.routes_path = Path(routes_path)
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self.routes = Routes()
        self._deck = Deck(0, self._rng)
        self.requests = {STABLE: 0, CANARY: 0}
        self.in_flight = {STABLE: 0, CANARY: 0}
        self.fallbacks = 0
        self.refresh()

    def refresh(self) -> Routes:
        """The routes in force, read again if the file changed. A file that is missing or
        unreadable keeps the last good routes (and is logged once per change)."""
        try:
            info = os.stat(self.routes_path)
            stamp: tuple | None = (info.st_ino, info.st_mtime_ns, info.st_size)
        except OSError:
            stamp = None
        if stamp is None or stamp == self._stamp:
            return self.routes
        with self._lock:
            if stamp == self._stamp:
                return self.routes
            self._stamp = stamp
            try:
                routes = read_routes(self.routes_path)
            except (OSError, ValueError) as exc:
                log.error("Routes in %s unreadable, keeping the last good ones: %s", self.routes_path, exc)
                return self.routes
            if routes is None or routes == self.routes:
                return self.routes
            if (routes.canary_port, routes.canary_weight) != (self.routes.canary_port, self.routes.canary_weight):
                self._deck = Deck(routes.canary_weight, self._rng)
            self.routes = routes
        log.info("Routing: %s", routes.describe())
        return routes

    def choose(self, path: str) -> list[tuple[str, int]]:
        """The tracks to try, in order: the one drawn, then stable if the canary cannot be reached."""
        routes = self.refresh()
        order = []
        if path.startswith(SPLIT_PREFIX) and routes.canary_port is not None and routes.canary_weight:
            with self._lock:
                canary = self._deck.draw()
            if canary:
                order.append((CANARY, routes.canary_port))
        if routes.stable_port is not None:
            order.append((STABLE, routes.stable_port))
        elif not order and routes.canary_port is not None:
            order.append((CANARY, routes.canary_port))
        return order

    def started(self, track: str) -> None:
        with self._lock:
            self.in_flight[track] += 1

    def ended(self, track: str, *, answered: bool) -> None:
        with self._lock:
            self.in_flight[track] -= 1
            if answered:
                self.requests[track] += 1

    def fell_back(self) -> None:
        with self._lock:
            self.fallbacks += 1

    def status(self) -> dict:
        routes = self.refresh()
        with self._lock:
            return {
                "pid": os.getpid(),
                "routes": routes.to_dict(),
                "requests": dict(self.requests),
                "in_flight": dict(self.in_flight),
                "fallbacks": self.fallbacks,
            }


# --- HTTP ------------------------------------------------------------------------------


class Unreachable(Exception):
    """No connection could be made: the model server never saw the request."""


def read_body(handler: BaseHTTPRequestHandler) -> bytes | None:
    """The request's body (chunked or with a Content-Length), or None when it has none."""
    if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
        chunks: list[bytes] = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = handler.headers.get("Content-Length")
    if length is None:
        return None
    size = int(length)
    if size < 0:
        raise ValueError("negative Content-Length")
    return handler.rfile.read(size)


def end_to_end(headers: Message) -> list[tuple[str, str]]:
    """Headers without the hop-by-hop ones, including any the Connection header names."""
    named = {token.strip().lower() for value in headers.get_all("Connection", []) or [] for token in value.split(",")}
    return [(name, value) for name, value in headers.items() if name.lower() not in HOP_BY_HOP | named]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as TF Serving's REST server offers it
    # The headers and the body of a reply go out as two writes; with Nagle's algorithm on, the
    # body waited for the client's delayed ACK of the headers: 40 ms added to every request on a
    # kept-alive connection (make bench, "The local router's hop"). As http.server offers it.
    disable_nagle_algorithm = True
    server_version = "modelgate-local-router"
    timeout = IDLE_TIMEOUT
    router: Router  # set on the subclass serve() builds

    def setup(self) -> None:
        super().setup()
        self._backends: dict[int, http.client.HTTPConnection] = {}

    def finish(self) -> None:
        for connection in self._backends.values():
            connection.close()
        super().finish()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - BaseHTTPRequestHandler's signature
        log.debug("%s - %s", self.address_string(), format % args)

    def _route(self) -> None:
        if self.path.split("?")[0] == STATUS_PATH:
            self._reply(200, json.dumps(self.router.status()).encode(), [("Content-Type", "application/json")])
            return
        try:
            body = read_body(self)
        except ValueError:
            self.close_connection = True
            self._error(400, "Malformed request body.")
            return
        headers = end_to_end(self.headers)
        if not any(name.lower() == "host" for name, _ in headers):
            headers.append(("Host", self.headers.get("Host") or "127.0.0.1"))
        choices = self.router.choose(self.path)
        if not choices:
            self._error(503, "No model server is routed for this deployment yet.")
            return
        for index, (track, port) in enumerate(choices):
            self.router.started(track)
            answered = False
            try:
                status, reason, answer_headers, data = self._exchange(port, body, headers)
                answered = True
            except Unreachable as exc:
                if index + 1 < len(choices):
                    self.router.fell_back()
                    continue
                self._error(503, f"The {track} model server on port {port} cannot be reached: {exc}")
                return
            except TimeoutError:
                self._error(504, f"The {track} model server on port {port} did not answer in {BACKEND_TIMEOUT:.0f} s.")
                return
            except (OSError, http.client.HTTPException) as exc:
                self._error(502, f"The {track} model server on port {port} broke the connection: {exc!r}")
                return
            finally:
                self.router.ended(track, answered=answered)
            self._reply(status, data, answer_headers, reason=reason)
            return

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _route

    def _exchange(
        self, port: int, body: bytes | None, headers: list[tuple[str, str]]
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """One request to one model server: (status, reason, headers, body)."""
        connection = self._backends.get(port)
        if connection is None:
            connection = self._backends[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=BACKEND_TIMEOUT)
        reused = connection.sock is not None
        while True:
            if connection.sock is None:
                try:
                    connection.connect()
                except OSError as exc:
                    connection.close()
                    raise Unreachable(exc.strerror or str(exc)) from exc
            try:
                connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    connection.putheader(name, value)
                if body is not None:
                    connection.putheader("Content-Length", str(len(body)))
                connection.endheaders(body)
                response = connection.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                connection.close()
                if not reused:
                    raise
                reused = False  # the server closed the idle connection: once more, on a new one
                continue
            except BaseException:
                connection.close()
                raise
            if response.will_close:
                connection.close()
            return response.status, response.reason, end_to_end(response.headers), data

    def _reply(self, status: int, data: bytes, headers: list[tuple[str, str]], *, reason: str | None = None) -> None:
        self.send_response_only(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        log.warning("%s %s: %s", self.command, self.path, message)
        body = json.dumps({"error": message}).encode()
        self._reply(status, body, [("Content-Type", "application/json")])


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many short-lived client connections at once (loadgen)


def bind(address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *, wait: float) -> Server:
    """Bind, retrying while the port is taken for up to ``wait`` seconds: when the router takes
    the public port over from a model server (local.py's handover), it binds the moment the
    old server lets go."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return Server(address, handler)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def serve(listen: str, routes_path: Path, *, bind_wait: float = 0.0) -> None:
    host, _, port = listen.rpartition(":")
    router = Router(routes_path)
    handler = type("RouterHandler", (Handler,), {"router": router})
    server = bind((host or "127.0.0.1", int(port)), handler, wait=bind_wait)
    log.info("Listening on %s:%s; routing: %s", host, port, router.routes.describe())
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployer.local_router", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", required=True, help="host:port of the environment's address")
    parser.add_argument("--routes", required=True, type=Path, help="the routes file the local backend writes")
    parser.add_argument("--bind-wait", type=float, default=0.0, help="seconds to retry while the port is taken")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    signal.signal(signal.SIGTERM, _stop)
    try:
        serve(args.listen, args.routes, bind_wait=args.bind_wait)
    except OSError as exc:
        log.error("Cannot listen on %s: %s", args.listen, exc)
        return 1
    except (SystemExit, KeyboardInterrupt):
        log.info("Stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
