"""Modelgate served as `make run` serves it (gunicorn, console.wsgi) in a child process,
on the test database, for tests that need a real server: fault injection, concurrency."""

import contextlib
import json
import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from django.db import connection

from console.management.commands.up import Command
from console.supervise import spawn, stop


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url(host: str | None = None, port: int | None = None) -> str:
    """The test database's URL, optionally through another host:port (a fault proxy)."""
    d = connection.settings_dict
    if connection.vendor == "postgresql":
        return f"postgres://{d['USER']}:{d['PASSWORD'] or ''}@{host or d['HOST']}:{port or d['PORT']}/{d['NAME']}"
    return f"sqlite:///{d['NAME']}"


@dataclass
class Answer:
    status: int
    headers: dict
    body: bytes
    seconds: float

    def json(self):
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def http(
    url: str, *, method: str = "GET", headers: dict | None = None, data: dict | None = None, timeout: float = 60
) -> Answer:
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(
        url,
        data=body,
        method=method,
        headers={**({"Content-Type": "application/json"} if body else {}), **(headers or {})},
    )
    started = time.monotonic()
    try:
        with _opener.open(request, timeout=timeout) as response:
            return Answer(response.status, dict(response.headers), response.read(), time.monotonic() - started)
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, dict(exc.headers), exc.read(), time.monotonic() - started)


@contextlib.contextmanager
def console_server(tmp_path, **env):
    """Yield the base URL of a gunicorn serving Modelgate with ``env`` on top of this process's."""
    port = free_port()
    full = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "console.settings",
        "DATABASE_URL": database_url(),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "MODELGATE_DEMO": "false",
        **env,
    }
    server = spawn(Command._gunicorn(f"127.0.0.1:{port}"), full)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if http(base + "/healthz", timeout=2).status == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.5)
        yield base
    finally:
        stop(server)
