"""The local backend: one model-server process per deployment, on this machine.

It runs a real ``tensorflow_model_server`` when one is on PATH, and otherwise the bundled
development server (``python -m tfserving_dev``), which answers the same REST API. The process
reads models.config every second, so switching versions is rewriting that file, just as a
ConfigMap update would be on Kubernetes. The process is started in its own session: a
worker that dies (even by SIGKILL) leaves serving untouched.

A switch from v1 to v2 first serves both (the label still on v1), waits for v2 to be
AVAILABLE, and only then drops v1 and moves the label (``finalize``): the local equivalent
of a rolling update with maxUnavailable 0. A v2 that cannot load never takes v1 down.

What the real binary requires (tensorflow/serving, model_servers/):
- a label may point only at an AVAILABLE version (server_core.cc:498-533); at startup no
  version is, so the server is started with --allow_version_labels_for_unavailable_models,
  and an existing label is only ever moved onto a version already AVAILABLE;
- a version that fails to load is retried 5 times a minute apart by default; with
  --max_num_load_retries=0 it is END with its error at once, so a rollout fails in seconds;
- the status of /labels/<label> lists every version (get_model_status_impl.cc:82-97 ignores
  the label), so a version's state is read from /versions/<n>, and where a label points from
  /labels/<label>/metadata, whose model_spec names the version it resolved
  (get_model_metadata_impl.cc:62-64).
"""

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

from deployer import manifests, tfserving
from deployer.backends.base import Answer
from deployer.backends.errors import PermanentError, RolloutFailed, RolloutTimeout, TransientError
from deployer.export import ExportError, export_version
from deployer.manifests import Release

KIND = "LocalModelServer"
API_VERSION = "modelgate.io/v1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


class LocalBackend:
    def __init__(self, *, root: Path, name: str, port: int):
        self.root = Path(root) / name
        self.name = name
        self.port = port

    # --- files and the process --------------------------------------------

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def config_path(self) -> Path:
        return self.root / "models.config"

    @property
    def pid_path(self) -> Path:
        return self.root / "server.pid"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def _write(self, path: Path, text: str) -> None:
        """Atomically: the server polls the file and must never read half of it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(f".{path.name}.tmp")
        scratch.write_text(text)
        os.replace(scratch, path)

    @staticmethod
    def _process_start(pid: int) -> str | None:
        """The process's start time (clock ticks after boot), or None if gone or a zombie.
        Saved with the pid, it tells our server from a process that reuses its pid later;
        unlike the command line, it is already right before the child has called exec."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        fields = stat[stat.rindex(")") + 2 :].split()
        return None if fields[0] in ("Z", "X") else fields[19]

    def pid(self) -> int | None:
        try:
            pid_text, started = self.pid_path.read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            return None
        return pid if self._process_start(pid) == started else None

    def _ensure_running(self) -> None:
        if self.pid() is not None:
            return
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                raise PermanentError(
                    f"Port {self.port} is taken by another program; the local model server "
                    "for this deployment cannot start. Free the port or undeploy and deploy again."
                )
        command = _server_command(self.port, self.config_path, self.root / "monitoring.config")
        with open(self.log_path, "ab") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=str(Path(__file__).resolve().parents[2]),
            )
        self._write(self.pid_path, f"{process.pid} {self._process_start(process.pid)}")

    def _log_tail(self, lines: int = 8) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _http(self, method: str, path: str, body: dict | None = None, timeout: float = 10.0) -> tuple[int, dict | str]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - an http:// URL to the local model server, built here
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise TransientError(f"The local model server on port {self.port} did not answer: {exc}") from exc
        try:
            return status, json.loads(raw or b"{}")
        except ValueError:
            return status, raw.decode(errors="replace")

    # --- the backend interface --------------------------------------------

    def render(self, release: Release) -> list[dict]:
        return [
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {"name": self.name, "annotations": {"modelgate.io/rollout-id": str(release.rollout_id)}},
                "spec": {
                    "model": release.model,
                    "version": release.version,
                    "environment": release.environment,
                    "port": self.port,
                    "modelsConfig": manifests.models_config(release, model_root=str(self.models_dir)),
                    "monitoringConfig": manifests.monitoring_config(),
                },
            }
        ]

    # Stand-in written by H4 (the controller) with CANARY.md's signatures, until H2's weighted
    # router lands: the canary is loaded beside the stable version on the same model server and
    # answers by version, but the label (and so the environment's traffic) stays on stable.
    def render_canary(self, stable: Release, canary: Release, weight: int) -> list[dict]:
        return [
            {
                "apiVersion": API_VERSION,
                "kind": "LocalCanary",
                "metadata": {
                    "name": f"{self.name}-canary",
                    "annotations": {"modelgate.io/rollout-id": str(canary.rollout_id)},
                },
                "spec": {
                    "model": canary.model,
                    "version": canary.version,
                    "stable": stable.version,
                    "environment": canary.environment,
                    "weight": weight,
                    "port": self.port,
                    "modelsConfig": manifests.models_config(
                        canary,
                        model_root=str(self.models_dir),
                        also_serve=(stable.version,),
                        label_version=stable.version,
                    ),
                    "monitoringConfig": manifests.monitoring_config(),
                },
            }
        ]

    def canary_end(self, stable: Release, objects: list[dict]) -> None:
        if self.pid() is not None:
            self._write(self.config_path, manifests.models_config(stable, model_root=str(self.models_dir)))

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
        """Serve the new version beside the one the label points at now, the label staying
        where it is: TF Serving refuses to move a label onto a version that is not AVAILABLE
        yet, even with --allow_version_labels_for_unavailable_models (server_core.cc:512-532).
        The label is read from the served config, not from `previous`: after a failed switch
        it is still on the version that served before."""
        spec = objects[0]["spec"]
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
        self._write(self.root / "monitoring.config", spec["monitoringConfig"])
        self._write(self.config_path, text)
        self._ensure_running()

    def wait(self, objects: list[dict], *, timeout: float, progress: Callable[[str], None]) -> str:
        spec = objects[0]["spec"]
        path = tfserving.model_path(spec["model"], version=spec["version"])
        deadline = time.monotonic() + timeout
        last = None
        while True:
            if self.pid() is None:
                raise RolloutFailed(self._exit_reason(spec["version"]))
            try:
                status, body = self._http("GET", path, timeout=5)
            except TransientError:
                status, body = 0, "starting"
            state = None
            if status == 200 and isinstance(body, dict) and body.get("model_version_status"):
                entry = body["model_version_status"][0]
                state = entry.get("state")
                if state == "AVAILABLE":
                    return f"version {spec['version']} is AVAILABLE on port {self.port}"
                error = entry.get("status") or {}
                if state == "END" and error.get("error_code", "OK") != "OK":
                    raise RolloutFailed(
                        f"version {spec['version']} could not load: "
                        f"{error.get('error_code')}: {error.get('error_message')}"
                    )
            message = (
                f"version {spec['version']} is {state}"
                if state
                else "waiting for the model server to read models.config"
            )
            if message != last:
                progress(message)
                last = message
            if time.monotonic() > deadline:
                raise RolloutTimeout(f"version {spec['version']} was not AVAILABLE after {timeout:.0f} s ({message})")
            time.sleep(0.3)

    def _exit_reason(self, version) -> str:
        """Why the server is gone, quoting tensorflow_model_server's own last word (main.cc:323:
        "Failed to start server. Error: …") when there is one."""
        tail = self._log_tail(40)
        reason = next((line for line in reversed(tail.splitlines()) if "Failed to start server" in line), "")
        if "did not become available" in reason:
            return f"version {version} could not load, and the model server exited: {reason}"
        if reason:
            return f"The model server did not start: {reason}"
        return f"The model server exited. Its log ends with:\n{self._log_tail()}"

    def finalize(self, objects: list[dict]) -> None:
        """Drop the old version and move the label, then wait until the server has read the
        new config: until /labels/<env>/metadata resolves to the new version, with that version
        still AVAILABLE at /versions/<n>. Only then do requests by label reach it."""
        spec = objects[0]["spec"]
        self._write(self.config_path, spec["modelsConfig"])
        model, version = spec["model"], str(spec["version"])
        deadline = time.monotonic() + 30
        seen = "no answer"
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise RolloutFailed(self._exit_reason(version))
            try:
                labelled = tfserving.model_path(model, label=spec["environment"])
                status, body = self._http("GET", f"{labelled}/metadata", timeout=5)
                resolved = (
                    (body.get("model_spec") or {}).get("version") if status == 200 and isinstance(body, dict) else None
                )
                seen = f"the label resolves to v{resolved}" if resolved else f"HTTP {status}: {str(body)[:200]}"
                if resolved == version:
                    status, body = self._http("GET", tfserving.model_path(model, version=version), timeout=5)
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

    def call(self, release: Release, method: str, path: str, body: dict | None = None) -> list[Answer]:
        status, answer = self._http(method, path, body)
        return [Answer(replica=f"127.0.0.1:{self.port}", status=status, body=answer)]

    def call_one(self, release: Release, replica: str, method: str, path: str, body: dict | None = None) -> int:
        return self._http(method, path, body)[0]

    def health(self, name: str) -> dict:
        """The local model server as one replica, in the Kubernetes backend's shape."""
        pid = self.pid()
        ready = False
        if pid is not None:
            try:
                ready = self._http("GET", tfserving.METRICS_PATH, timeout=3)[0] == 200
            except TransientError:
                ready = False
        phase = "Running" if pid is not None else "Stopped"
        reason = "" if ready else ("not answering" if pid is not None else "the process is not running")
        return {
            "desired": 1,
            "updated": 1 if pid is not None else 0,
            "ready": int(ready),
            "available": int(ready),
            "pods": [
                {
                    "name": f"127.0.0.1:{self.port} (pid {pid or '-'})",
                    "phase": phase,
                    "ready": ready,
                    "restarts": 0,
                    "reason": reason,
                    "version": None,
                }
            ],
            "events": [],
        }

    def read(self, objects: list[dict]) -> list[dict | None]:
        live: list[dict | None] = []
        for obj in objects:
            try:
                text = self.config_path.read_text()
            except OSError:
                live.append(None)
                continue
            running = self.pid() is not None
            live.append(
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "metadata": {"name": self.name},
                    "spec": {**obj["spec"], "modelsConfig": text, "port": self.port},
                    "status": {"running": running},
                }
            )
        return live

    def stop(self) -> None:
        """Stop the model server, keeping its files (`make run` restarts it next time)."""
        pid = self.pid()
        if pid is not None:
            os.killpg(pid, signal.SIGTERM)
            for _ in range(50):
                if self.pid() is None:
                    break
                time.sleep(0.1)
            else:
                os.killpg(pid, signal.SIGKILL)

    def remove(self, objects: list[dict]) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
