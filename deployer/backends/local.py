"""The local backend: a deployment's model servers as processes on this machine, behind a
small router that owns the environment's address.

It runs a real ``tensorflow_model_server`` when one is on PATH, and otherwise the bundled
development server (``python -m tfserving_dev``), which answers the same REST API. A model
server reads models.config every second, so switching versions is rewriting that file, just
as a ConfigMap update would be on Kubernetes. Every process is started in its own session: a
worker that dies (even by SIGKILL) leaves serving untouched.

The processes of one deployment, each known by a pid file in its directory
(``DEPLOYER_LOCAL_ROOT/<deployment>/``), ``<pid> <start time> <port>``:

- ``router.pid``: the router (``deployer/local_router.py``) on the deployment's public port
  (``Deployment.local_port``, the address clients call), from the first rollout on;
- ``server.pid``: the stable track's model server on an internal port (models.config);
- ``canary/server.pid``: while a canary runs, its model server on another internal port, with
  its own models.config (the canary version, labelled with the environment, so the label URL
  answers from either track) reading the same exported versions under ``models/`` (an export
  never changes once renamed into place, as two pods that fetched the same version).

``router.json`` says where the router sends requests: the stable port, the canary's port and
its weight. Why a router always, and not only during a canary, is in local_router.py: the
public port must never change hands while traffic flows. A canary starts, changes weight and
ends by rewriting that file, which the router re-reads at its next request; and since the
file outlives the router, a restarted router keeps the weight.

A switch from v1 to v2 on the stable server first serves both (the label still on v1), waits
for v2 to be AVAILABLE, and only then drops v1 and moves the label (``finalize``): the local
equivalent of a rolling update with maxUnavailable 0. A v2 that cannot load never takes v1
down.

Calls: ``call(release)`` reaches the release's track's model server directly (the pipeline
verifies exactly the server it changed, whatever the split); ``call_one`` with a stable
release goes through the environment's address, the router, as a client's request does (so
``manage.py loadgen`` exercises the split), and with a canary release to the canary alone.

What the real binary requires (tensorflow/serving, model_servers/):
- a label may point only at an AVAILABLE version (server_core.cc:498-533); at startup no
  version is, so the server is started with --allow_version_labels_for_unavailable_models,
  and an existing label is only ever moved onto a version already AVAILABLE;
- a version that fails to load is retried 5 times a minute apart by default; with
  --max_num_load_retries=0 it is END with its error at once, so a rollout fails in seconds;
- the status of /labels/<label> lists every version (get_model_status_impl.cc:82-97 ignores
  the label), so a version's state is read from /versions/<n>, and where a label points from
  /labels/<label>/metadata, whose model_spec names the version it resolved
  (get_model_metadata_impl.cc:62-64);
- the REST port opens only once the initial versions have loaded (server.cc, BuildAndStart:
  ServerCore::Create before CreateAndStartHttpServer), so until a canary's version is
  AVAILABLE the router cannot connect to it and sends its share to stable.
"""

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deployer import local_router, manifests, tfserving
from deployer.backends.base import Answer
from deployer.backends.errors import PermanentError, RolloutFailed, RolloutTimeout, TransientError
from deployer.export import ExportError, export_version
from deployer.local_router import CANARY, STABLE, Routes
from deployer.manifests import Release

KIND = "LocalModelServer"
SPLIT_KIND = "LocalTrafficSplit"
API_VERSION = "modelgate.io/v1"
REPOSITORY = Path(__file__).resolve().parents[2]
ROUTER_START_SECONDS = 30.0
DRAIN_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _reusable(port: int | None) -> int:
    """The port a model server had, if it is still free (the routes stay as they were), else a new one."""
    if port:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
                return port
            except OSError:
                pass
    return free_port()


def _server_command(port: int, config: Path, monitoring: Path) -> list[str]:
    flags = [
        f"--rest_api_port={port}",
        f"--model_config_file={config}",
        f"--monitoring_config_file={monitoring}",
        "--model_config_file_poll_wait_seconds=1",
        "--file_system_poll_wait_seconds=1",
        f"--port={free_port()}",
        "--allow_version_labels_for_unavailable_models=true",
        "--max_num_load_retries=0",
    ]
    binary = shutil.which("tensorflow_model_server")
    if binary:
        return [binary, *flags]
    return [sys.executable, "-m", "tfserving_dev", "--rest_api_host=127.0.0.1", *flags]


def _write(path: Path, text: str) -> None:
    """Atomically: a model server polls its config and must never read half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.write_text(text)
    os.replace(scratch, path)


def _process_start(pid: int) -> str | None:
    """The process's start time (clock ticks after boot), or None if gone or a zombie.
    Saved with the pid, it tells our process from one that reuses its pid later; unlike the
    command line, it is already right before the child has called exec."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else fields[19]


class LocalProcess:
    """One process of a deployment, known by its pid file: ``<pid> <start time> [<port>]``
    (a model server started before the router existed recorded no port: it listens on the
    environment's address itself)."""

    def __init__(self, directory: Path, name: str):
        self.directory = directory
        self.name = name

    @property
    def pid_path(self) -> Path:
        return self.directory / f"{self.name}.pid"

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.name}.log"

    def _record(self) -> tuple[int, str, int | None] | None:
        try:
            fields = self.pid_path.read_text().split()
            return int(fields[0]), fields[1], int(fields[2]) if len(fields) > 2 else None
        except (OSError, ValueError, IndexError):
            return None

    def recorded(self) -> bool:
        return self._record() is not None

    def pid(self) -> int | None:
        """The pid while the process runs, else None."""
        record = self._record()
        if record is None:
            return None
        return record[0] if _process_start(record[0]) == record[1] else None

    def port(self) -> int | None:
        """The port recorded when it was started (whether or not it still runs)."""
        record = self._record()
        return record[2] if record else None

    def start(self, command: list[str], *, port: int, log: Path | None = None) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(log or self.log_path, "ab") as output:
            process = subprocess.Popen(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=str(REPOSITORY),
            )
        _write(self.pid_path, f"{process.pid} {_process_start(process.pid)} {port}")
        return process.pid

    def stop(self) -> bool:
        """SIGTERM to its process group, SIGKILL after 5 s; returns once it is gone (or a
        zombie). Whether it was running."""
        pid = self.pid()
        if pid is None:
            return False
        for sig, seconds in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                return True
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if self.pid() is None:
                    return True
                time.sleep(0.05)
        return True

    def log_tail(self, lines: int = 8) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def pid_files(root: Path) -> list[Path]:
    """Every pid file of every deployment under ``root`` (routers, stable and canary servers)."""
    root = Path(root)
    return sorted([*root.glob("*/*.pid"), *root.glob("*/canary/*.pid")])


def process_alive(pid_file: Path) -> bool:
    return LocalProcess(pid_file.parent, pid_file.stem).pid() is not None


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _track(obj: dict) -> str:
    # Manifests stored before canaries existed name no track: they are the stable server's.
    return (obj.get("spec") or {}).get("track") or STABLE


class LocalBackend:
    def __init__(self, *, root: Path, name: str, port: int):
        self.root = Path(root) / name
        self.name = name
        self.port = port
        self._servers = {
            STABLE: LocalProcess(self.root, "server"),
            CANARY: LocalProcess(self.root / "canary", "server"),
        }
        self._router = LocalProcess(self.root, "router")
        # A stable server being started beside one that predates the router (_take_over).
        self._successor = LocalProcess(self.root, "server-successor")

    # --- files and processes ----------------------------------------------

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def config_path(self) -> Path:
        return self.root / "models.config"

    @property
    def pid_path(self) -> Path:
        return self._servers[STABLE].pid_path

    @property
    def log_path(self) -> Path:
        return self._servers[STABLE].log_path

    @property
    def routes_path(self) -> Path:
        return self.root / "router.json"

    @property
    def canary_dir(self) -> Path:
        return self.root / "canary"

    def _dir(self, track: str) -> Path:
        return self.canary_dir if track == CANARY else self.root

    def pid(self) -> int | None:
        """The stable model server's pid while it runs."""
        return self._servers[STABLE].pid()

    def router_pid(self) -> int | None:
        return self._router.pid()

    def canary_pid(self) -> int | None:
        return self._servers[CANARY].pid()

    def running(self) -> bool:
        """Whether any of the deployment's processes runs."""
        return any(p.pid() is not None for p in (self._router, self._successor, *self._servers.values()))

    def server_port(self, track: str) -> int | None:
        """Where the track's model server listens, as its pid file says (None: no canary). A
        stable server that recorded no port (or none at all) is on the public port itself."""
        process = self._servers[track]
        port = process.port()
        if port is None and track == STABLE:
            return self.port
        return port

    def replica(self, track: str) -> str:
        """A model server's name in answers and metrics: the environment's address for stable
        (as before canaries existed), with ``/canary`` for the canary."""
        return f"127.0.0.1:{self.port}" + ("/canary" if track == CANARY else "")

    def replicas(self) -> list[tuple[str, str, int | None]]:
        """(replica, track, port) of each model server: stable, and the canary while there is one."""
        found: list[tuple[str, str, int | None]] = [(self.replica(STABLE), STABLE, self.server_port(STABLE))]
        if self._servers[CANARY].recorded():
            found.append((self.replica(CANARY), CANARY, self.server_port(CANARY)))
        return found

    def routes(self) -> Routes:
        try:
            return local_router.read_routes(self.routes_path) or Routes()
        except (OSError, ValueError):
            return Routes()

    def _set_routes(self, **changes) -> None:
        current = self.routes()
        wanted = dataclasses.replace(current, **changes)
        if wanted != current or not self.routes_path.exists():
            local_router.write_routes(self.routes_path, wanted)

    def _http(
        self, port: int, method: str, path: str, body: dict | None = None, timeout: float = 10.0
    ) -> tuple[int, dict | str]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - an http:// URL to a local process, built here
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise TransientError(f"The local model server on port {port} did not answer: {exc}") from exc
        try:
            return status, json.loads(raw or b"{}")
        except ValueError:
            return status, raw.decode(errors="replace")

    def router_status(self) -> dict | None:
        """What the router says (routes in force, requests per track, in flight), or None."""
        try:
            status, body = self._http(self.port, "GET", local_router.STATUS_PATH, timeout=3)
        except TransientError:
            return None
        return body if status == 200 and isinstance(body, dict) and "routes" in body else None

    def _start_server(self, track: str) -> int:
        process, directory = self._servers[track], self._dir(track)
        port = _reusable(process.port())
        process.start(_server_command(port, directory / "models.config", directory / "monitoring.config"), port=port)
        return port

    def _ensure_server(self, track: str, spec: dict | None) -> None:
        """The track's model server runs, and the routes name its port."""
        process = self._servers[track]
        if process.pid() is None:
            self._start_server(track)
        elif track == STABLE and process.port() is None and spec is not None:
            self._take_over(spec)
        if track == STABLE:
            self._set_routes(stable_port=self.server_port(STABLE))
        else:
            self._set_routes(canary_port=self.server_port(CANARY))

    def _start_router(self, *, bind_wait: float = 0.0) -> None:
        command = [
            sys.executable,
            "-m",
            "deployer.local_router",
            f"--listen=127.0.0.1:{self.port}",
            f"--routes={self.routes_path}",
            f"--bind-wait={bind_wait}",
        ]
        self._router.start(command, port=self.port)

    def _await_router(self, timeout: float = ROUTER_START_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while True:
            pid = self._router.pid()
            if pid is None:
                raise PermanentError(
                    f"The router on port {self.port} did not start. Its log ends with:\n{self._router.log_tail()}"
                )
            status = self.router_status()
            if status is not None and status.get("pid") == pid:
                return
            if time.monotonic() > deadline:
                raise TransientError(f"The router on port {self.port} did not answer within {timeout:.0f} s.")
            time.sleep(0.05)

    def _ensure_router(self) -> None:
        if self._router.pid() is not None:
            return
        if _listening(self.port):
            raise PermanentError(
                f"Port {self.port} is taken by another program; the local model server "
                "for this deployment cannot start. Free the port or undeploy and deploy again."
            )
        self._start_router()
        self._await_router()

    def _take_over(self, spec: dict, timeout: float = 600.0) -> None:
        """The stable server was started by a Modelgate from before the router and listens on
        the environment's address itself. Hand the address over with the least interruption: a
        successor on an internal port, serving the labelled version; a router waiting for the
        port; then the old server stops, and the router binds the port the moment it is free
        (the connections refused in between, for milliseconds, are the only ones)."""
        old = self._servers[STABLE]
        port = free_port()
        self._successor.start(
            _server_command(port, self.config_path, self.root / "monitoring.config"), port=port, log=old.log_path
        )
        labelled = f"{tfserving.model_path(spec['model'], label=spec['environment'])}/metadata"
        deadline = time.monotonic() + timeout
        while True:
            if self._successor.pid() is None:
                raise PermanentError(
                    f"The model server could not be restarted behind the router:\n{self._successor.log_tail()}"
                )
            try:
                if self._http(port, "GET", labelled, timeout=5)[0] == 200:
                    break
            except TransientError:
                pass
            if time.monotonic() > deadline:
                self._successor.stop()
                raise TransientError(f"The model server restarting behind the router did not serve in {timeout:.0f} s.")
            time.sleep(0.2)
        self._set_routes(stable_port=port)
        self._start_router(bind_wait=60)
        old.stop()
        os.replace(self._successor.pid_path, old.pid_path)
        self._await_router()

    def _exit_reason(self, track: str, version) -> str:
        """Why the server is gone, quoting tensorflow_model_server's own last word (main.cc:323:
        "Failed to start server. Error: …") when there is one."""
        process = self._servers[track]
        tail = process.log_tail(40)
        reason = next((line for line in reversed(tail.splitlines()) if "Failed to start server" in line), "")
        if "did not become available" in reason:
            return f"version {version} could not load, and the model server exited: {reason}"
        if reason:
            return f"The model server did not start: {reason}"
        return f"The model server exited. Its log ends with:\n{process.log_tail()}"

    # --- the backend interface --------------------------------------------

    def render(self, release: Release) -> list[dict]:
        canary = release.track == CANARY
        spec = {
            "model": release.model,
            "version": release.version,
            "environment": release.environment,
            "track": CANARY if canary else STABLE,
            "modelsConfig": manifests.models_config(release, model_root=str(self.models_dir)),
            "monitoringConfig": manifests.monitoring_config(),
        }
        if not canary:
            spec["port"] = self.port  # the canary's port is internal, chosen when it starts
        return [
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {
                    "name": f"{self.name}-canary" if canary else self.name,
                    "annotations": {"modelgate.io/rollout-id": str(release.rollout_id)},
                },
                "spec": spec,
            }
        ]

    def render_canary(self, stable: Release, canary: Release, weight: int) -> list[dict]:
        """The canary's model server and the router's split, in the order they are applied:
        the server first, so its share has somewhere to go."""
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
            raise manifests.ManifestError(f"A canary's weight is a whole percentage from 0 to 100, not {weight!r}.")
        canary = dataclasses.replace(canary, track=CANARY)
        split = {
            "apiVersion": API_VERSION,
            "kind": SPLIT_KIND,
            "metadata": {"name": self.name, "annotations": {"modelgate.io/rollout-id": str(canary.rollout_id)}},
            "spec": {
                "port": self.port,
                "model": stable.model,
                "environment": stable.environment,
                "backends": [
                    {"track": STABLE, "version": stable.version, "weight": 100 - weight},
                    {"track": CANARY, "version": canary.version, "weight": weight},
                ],
            },
        }
        return [*self.render(canary), split]

    def prepare(self, release: Release, version) -> str:
        try:
            path = export_version(version, self.models_dir)
        except ExportError as exc:
            raise PermanentError(str(exc)) from exc
        return f"SavedModel laid out at {path}"

    def _labelled_version(self, spec: dict) -> int | None:
        """The version the environment's label points at in the models.config being served,
        read by the development server's reader (TF Serving's own config message): the `local`
        extra, which a machine running local deployments has installed."""
        from tfserving_dev.config import read_models_config  # noqa: PLC0415 - needs tensorflow-serving-api
        from tfserving_dev.errors import ServingError  # noqa: PLC0415

        try:
            configs = read_models_config(self.config_path.read_text(), str(self.config_path))
        except (OSError, ServingError):
            return None
        for config in configs:
            if config.name == spec["model"]:
                return dict(config.labels).get(spec["environment"])
        return None

    def apply(self, objects: list[dict], *, previous: list[dict] | None = None) -> None:
        for obj in objects:
            if obj["kind"] == SPLIT_KIND:
                self._apply_split(obj["spec"])
            elif _track(obj) == CANARY:
                self._apply_canary(obj["spec"])
            else:
                self._apply_stable(obj["spec"])

    def _apply_stable(self, spec: dict) -> None:
        """Serve the new version beside the one the label points at now, the label staying
        where it is: TF Serving refuses to move a label onto a version that is not AVAILABLE
        yet, even with --allow_version_labels_for_unavailable_models (server_core.cc:512-532).
        The label is read from the served config, not from `previous`: after a failed switch
        it is still on the version that served before."""
        text = spec["modelsConfig"]
        labelled = self._labelled_version(spec) if self.pid() is not None else None
        if labelled is not None and labelled != spec["version"]:
            release = Release(
                model=spec["model"],
                version=spec["version"],
                environment=spec["environment"],
                rollout_id=0,
                savedmodel_path=".",
            )
            text = manifests.models_config(
                release, model_root=str(self.models_dir), also_serve=(labelled,), label_version=labelled
            )
        _write(self.root / "monitoring.config", spec["monitoringConfig"])
        _write(self.config_path, text)
        self._ensure_server(STABLE, spec)
        self._ensure_router()

    def _apply_canary(self, spec: dict) -> None:
        _write(self.canary_dir / "monitoring.config", spec["monitoringConfig"])
        _write(self.canary_dir / "models.config", spec["modelsConfig"])
        self._ensure_server(CANARY, spec)
        self._ensure_router()

    def _apply_split(self, spec: dict) -> None:
        weight = next(b["weight"] for b in spec["backends"] if b["track"] == CANARY)
        self._set_routes(canary_port=self._servers[CANARY].port(), canary_weight=weight)
        self._ensure_router()

    def wait(self, objects: list[dict], *, timeout: float, progress: Callable[[str], None]) -> str:
        deadline = time.monotonic() + timeout
        said = []
        for obj in objects:
            if obj["kind"] == SPLIT_KIND:
                said.append(self._wait_split(obj["spec"], deadline, timeout))
            else:
                said.append(self._wait_version(_track(obj), obj["spec"], deadline, timeout, progress))
        return "; ".join(said)

    def _wait_version(
        self, track: str, spec: dict, deadline: float, timeout: float, progress: Callable[[str], None]
    ) -> str:
        path = tfserving.model_path(spec["model"], version=spec["version"])
        name = "the canary's version" if track == CANARY else "version"
        last = None
        while True:
            port = self.server_port(track)
            if self._servers[track].pid() is None or port is None:
                raise RolloutFailed(self._exit_reason(track, spec["version"]))
            try:
                status, body = self._http(port, "GET", path, timeout=5)
            except TransientError:
                status, body = 0, "starting"
            state = None
            if status == 200 and isinstance(body, dict) and body.get("model_version_status"):
                entry = body["model_version_status"][0]
                state = entry.get("state")
                if state == "AVAILABLE":
                    return f"{name} {spec['version']} is AVAILABLE on port {port}"
                error = entry.get("status") or {}
                if state == "END" and error.get("error_code", "OK") != "OK":
                    raise RolloutFailed(
                        f"{name} {spec['version']} could not load: "
                        f"{error.get('error_code')}: {error.get('error_message')}"
                    )
            message = (
                f"{name} {spec['version']} is {state}"
                if state
                else "waiting for the model server to read models.config"
            )
            if message != last:
                progress(message)
                last = message
            if time.monotonic() > deadline:
                raise RolloutTimeout(f"{name} {spec['version']} was not AVAILABLE after {timeout:.0f} s ({message})")
            time.sleep(0.3)

    def _wait_split(self, spec: dict, deadline: float, timeout: float) -> str:
        """Until the router routes as the routes file says (it re-reads the file on a request,
        this one included)."""
        wanted = self.routes()
        while True:
            pid = self._router.pid()
            if pid is None:
                raise RolloutFailed(f"The router on port {self.port} is not running:\n{self._router.log_tail()}")
            status = self.router_status()
            if status is not None and status.get("pid") == pid and Routes.from_dict(status["routes"]) == wanted:
                versions = {b["track"]: b["version"] for b in spec["backends"]}
                return (
                    f"the router on port {self.port} sends {wanted.canary_weight} % to the canary "
                    f"(v{versions[CANARY]}) and {100 - wanted.canary_weight} % to stable (v{versions[STABLE]})"
                )
            if time.monotonic() > deadline:
                raise RolloutTimeout(f"The router on port {self.port} did not take the new weights in {timeout:.0f} s.")
            time.sleep(0.1)

    def finalize(self, objects: list[dict]) -> None:
        """Drop the old version and move the label, then wait until the server has read the
        new config: until /labels/<env>/metadata resolves to the new version, with that version
        still AVAILABLE at /versions/<n>. Only then do requests by label reach it. (A canary's
        objects have nothing to drop: its server only ever serves its version.)"""
        for obj in objects:
            if obj["kind"] == KIND and _track(obj) == STABLE:
                self._finalize_stable(obj["spec"])

    def _finalize_stable(self, spec: dict) -> None:
        _write(self.config_path, spec["modelsConfig"])
        model, version = spec["model"], str(spec["version"])
        deadline = time.monotonic() + 30
        seen = "no answer"
        while time.monotonic() < deadline:
            port = self.server_port(STABLE)
            if self.pid() is None or port is None:
                raise RolloutFailed(self._exit_reason(STABLE, version))
            try:
                labelled = tfserving.model_path(model, label=spec["environment"])
                status, body = self._http(port, "GET", f"{labelled}/metadata", timeout=5)
                resolved = (
                    (body.get("model_spec") or {}).get("version") if status == 200 and isinstance(body, dict) else None
                )
                seen = f"the label resolves to v{resolved}" if resolved else f"HTTP {status}: {str(body)[:200]}"
                if resolved == version:
                    status, body = self._http(port, "GET", tfserving.model_path(model, version=version), timeout=5)
                    states = (
                        [s.get("state") for s in body.get("model_version_status", [])]
                        if status == 200 and isinstance(body, dict)
                        else []
                    )
                    if states == ["AVAILABLE"]:
                        return
                    seen = f"v{version} is {states or status}"
            except TransientError as exc:
                seen = str(exc)
            time.sleep(0.2)
        raise TransientError(
            f"The model server did not switch label {spec['environment']!r} to v{version} within 30 s ({seen})."
        )

    def canary_end(self, stable: Release, objects: list[dict]) -> None:
        """All traffic back to stable, then the canary's server stopped and its files deleted.
        The server stops only once the router has taken the routes without it and has no
        request in flight to it, so none is cut off (one that chose the canary just before and
        finds it gone goes to stable, as any request that cannot connect does)."""
        self._set_routes(canary_port=None, canary_weight=0)
        if self._router.pid() is not None:
            deadline = time.monotonic() + DRAIN_SECONDS
            while time.monotonic() < deadline:
                status = self.router_status()
                if status is None:
                    break
                routes = Routes.from_dict(status["routes"])
                if routes.canary_port is None and not routes.canary_weight and not status["in_flight"][CANARY]:
                    break
                time.sleep(0.05)
        self._servers[CANARY].stop()
        shutil.rmtree(self.canary_dir, ignore_errors=True)

    def resume_canary(self) -> bool:
        """Start the canary's model server again if a canary was under way when its processes
        stopped (`make run` ended); the routes file kept its weight. Whether there was one."""
        if not (self.canary_dir / "models.config").exists():
            return False
        self._ensure_server(CANARY, None)
        return True

    def _server_for_call(self, release: Release) -> tuple[str, int]:
        track = CANARY if release.track == CANARY else STABLE
        port = self.server_port(track)
        if port is None:
            raise TransientError(f"No canary model server runs for {self.name}.")
        return track, port

    def call(self, release: Release, method: str, path: str, body: dict | None = None) -> list[Answer]:
        track, port = self._server_for_call(release)
        status, answer = self._http(port, method, path, body)
        return [Answer(replica=self.replica(track), status=status, body=answer)]

    def call_one(self, release: Release, replica: str, method: str, path: str, body: dict | None = None) -> int:
        port = self._server_for_call(release)[1] if release.track == CANARY else self.port
        return self._http(port, method, path, body)[0]

    def health(self, name: str) -> dict:
        """The model servers as replicas, in the Kubernetes backend's shape: stable, and the
        canary while there is one. The stable one counts as ready only while the router in
        front of it runs too: without it no client reaches it."""
        router = self._router.pid() is not None
        pods: list[dict[str, Any]] = []
        for replica, track, port in self.replicas():
            pid = self._servers[track].pid()
            ready = False
            if pid is not None and port is not None:
                try:
                    ready = self._http(port, "GET", tfserving.METRICS_PATH, timeout=3)[0] == 200
                except TransientError:
                    ready = False
            reason = "" if ready else ("not answering" if pid is not None else "the process is not running")
            if ready and track == STABLE and not router:
                ready, reason = False, f"the router on port {self.port} is not running"
            pods.append(
                {
                    "name": f"{replica} (pid {pid or '-'})",
                    "phase": "Running" if pid is not None else "Stopped",
                    "ready": ready,
                    "restarts": 0,
                    "reason": reason,
                    "version": None,
                    "track": track,
                }
            )
        running = sum(p["phase"] == "Running" for p in pods)
        ready_count = sum(p["ready"] for p in pods)
        return {
            "desired": len(pods),
            "updated": running,
            "ready": ready_count,
            "available": ready_count,
            "pods": pods,
            "events": [],
        }

    def read(self, objects: list[dict]) -> list[dict | None]:
        live: list[dict | None] = []
        for obj in objects:
            if obj["kind"] == SPLIT_KIND:
                live.append(self._read_split(obj))
                continue
            track = _track(obj)
            try:
                text = (self._dir(track) / "models.config").read_text()
            except OSError:
                live.append(None)
                continue
            running = self._servers[track].pid() is not None
            if track == STABLE:
                running = running and self._router.pid() is not None
            spec = {**obj["spec"], "modelsConfig": text}
            if track == STABLE:
                spec["port"] = self.port
            live.append(
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "metadata": {"name": obj["metadata"]["name"]},
                    "spec": spec,
                    "status": {"running": running},
                }
            )
        return live

    def _read_split(self, obj: dict) -> dict | None:
        if not self.routes_path.exists():
            return None
        routes = self.routes()
        weights = {STABLE: 100 - routes.canary_weight, CANARY: routes.canary_weight}
        return {
            "apiVersion": API_VERSION,
            "kind": SPLIT_KIND,
            "metadata": {"name": obj["metadata"]["name"]},
            "spec": {
                **obj["spec"],
                "backends": [{**b, "weight": weights[b["track"]]} for b in obj["spec"]["backends"]],
            },
            "status": {"running": self._router.pid() is not None},
        }

    def stop(self) -> None:
        """Stop the router, then the model servers, keeping their files (`make run` restarts
        them next time; the routes file keeps a canary's weight)."""
        for process in (self._router, self._successor, self._servers[CANARY], self._servers[STABLE]):
            process.stop()

    def remove(self, objects: list[dict]) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
