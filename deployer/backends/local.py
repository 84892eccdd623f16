"""The local backend: one model-server process per deployment, on this machine.

It runs a real ``tensorflow_model_server`` when one is on PATH, and otherwise the bundled
development server (deployer.local_server), which answers the same REST API. The process
reads models.config every second, so switching versions is rewriting that file, just as a
ConfigMap update would be on Kubernetes. The process is started in its own session: a
worker that dies (even by SIGKILL) leaves serving untouched.

A switch from v1 to v2 first serves both (the label still on v1), waits for v2 to be
AVAILABLE, and only then drops v1 (``finalize``): the local equivalent of a rolling update
with maxUnavailable 0. A v2 that cannot load never takes v1 down.
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
from pathlib import Path
from typing import Callable

from deployer import manifests
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
    flags = [f"--rest_api_port={port}", f"--model_config_file={config}",
             f"--monitoring_config_file={monitoring}", "--model_config_file_poll_wait_seconds=1",
             "--file_system_poll_wait_seconds=1", f"--port={free_port()}"]
    binary = shutil.which("tensorflow_model_server")
    if binary:
        return [binary, *flags]
    return [sys.executable, "-m", "deployer.local_server", "--rest_api_host=127.0.0.1", *flags]


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
        fields = stat[stat.rindex(")") + 2:].split()
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
                raise PermanentError(f"Port {self.port} is taken by another program; the local model server "
                                     "for this deployment cannot start. Free the port or undeploy and deploy again.")
        command = _server_command(self.port, self.config_path, self.root / "monitoring.config")
        with open(self.log_path, "ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True, cwd=str(Path(__file__).resolve().parents[2]))
        self._write(self.pid_path, f"{process.pid} {self._process_start(process.pid)}")

    def _log_tail(self, lines: int = 8) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _http(self, method: str, path: str, body: dict | None = None, timeout: float = 10.0) -> tuple[int, dict | str]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
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
        return [{
            "apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": self.name, "annotations": {"modelgate.io/rollout-id": str(release.rollout_id)}},
            "spec": {"model": release.model, "version": release.version, "environment": release.environment,
                     "port": self.port,
                     "modelsConfig": manifests.models_config(release, model_root=str(self.models_dir)),
                     "monitoringConfig": manifests.monitoring_config()},
        }]

    def prepare(self, release: Release, version) -> str:
        try:
            path = export_version(version, self.models_dir)
        except ExportError as exc:
            raise PermanentError(str(exc)) from exc
        return f"SavedModel laid out at {path}"

    def apply(self, objects: list[dict], *, previous: list[dict] | None = None) -> None:
        spec = objects[0]["spec"]
        text = spec["modelsConfig"]
        old = previous[0]["spec"] if previous else None
        if old and old["model"] == spec["model"] and old["version"] != spec["version"]:
            # Serve both while the new version loads; the label stays on the old one.
            release = Release(model=spec["model"], version=spec["version"], environment=spec["environment"],
                              rollout_id=0, savedmodel_path=".")
            text = manifests.models_config(release, model_root=str(self.models_dir), also_serve=(old["version"],),
                                           label_version=old["version"])
        self._write(self.root / "monitoring.config", spec["monitoringConfig"])
        self._write(self.config_path, text)
        self._ensure_running()

    def wait(self, objects: list[dict], *, timeout: float, progress: Callable[[str], None]) -> str:
        spec = objects[0]["spec"]
        path = f"/v1/models/{spec['model']}/versions/{spec['version']}"
        deadline = time.monotonic() + timeout
        last = None
        while True:
            if self.pid() is None:
                raise RolloutFailed(f"The model server exited. Its log ends with:\n{self._log_tail()}")
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
                    raise RolloutFailed(f"version {spec['version']} could not load: "
                                        f"{error.get('error_code')}: {error.get('error_message')}")
            message = (f"version {spec['version']} is {state}" if state
                       else "waiting for the model server to read models.config")
            if message != last:
                progress(message)
                last = message
            if time.monotonic() > deadline:
                raise RolloutTimeout(f"version {spec['version']} was not AVAILABLE after {timeout:.0f} s ({message})")
            time.sleep(0.3)

    def finalize(self, objects: list[dict]) -> None:
        """Drop the old version and move the label, then wait until the server has read the
        new config: only then do requests by label reach the new version."""
        spec = objects[0]["spec"]
        self._write(self.config_path, spec["modelsConfig"])
        # The label's metadata names the version the label resolves to. (Its status would not:
        # TF Serving's GetModelStatus ignores the label and lists every version.)
        path = f"/v1/models/{spec['model']}/labels/{spec['environment']}/metadata"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                status, body = self._http("GET", path, timeout=5)
            except TransientError:
                status, body = 0, None
            served = (body.get("model_spec") or {}).get("version") if status == 200 and isinstance(body, dict) else None
            if served == str(spec["version"]):
                return
            time.sleep(0.2)
        raise TransientError(f"The model server did not switch label {spec['environment']!r} to "
                             f"v{spec['version']} within 30 s.")

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
                ready = self._http("GET", "/monitoring/prometheus/metrics", timeout=3)[0] == 200
            except TransientError:
                ready = False
        phase = "Running" if pid is not None else "Stopped"
        reason = "" if ready else ("not answering" if pid is not None else "the process is not running")
        return {"desired": 1, "updated": 1 if pid is not None else 0, "ready": int(ready), "available": int(ready),
                "pods": [{"name": f"127.0.0.1:{self.port} (pid {pid or '-'})", "phase": phase, "ready": ready,
                          "restarts": 0, "reason": reason, "version": None}],
                "events": []}

    def read(self, objects: list[dict]) -> list[dict | None]:
        live = []
        for obj in objects:
            try:
                text = self.config_path.read_text()
            except OSError:
                live.append(None)
                continue
            running = self.pid() is not None
            live.append({"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": self.name},
                         "spec": {**obj["spec"], "modelsConfig": text, "port": self.port},
                         "status": {"running": running}})
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
