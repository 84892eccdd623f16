"""The kubelet in miniature: each pod runs for real, so a rollout is real end to end.

The init container calls the test's fetch_model(model, version, model_root), which lays a
SavedModel out where the pod's `models` volume would be. The serving container is a
LocalModelServer (tfserving_dev, our TF Serving stand-in) started with the models.config
from the pod's `config` ConfigMap, base paths pointed at that directory. The pod is Ready when
every version its config names is AVAILABLE, which is what the manifest's readiness probe checks;
a version that ends in an error crash-loops the container, as tensorflow_model_server exits when
its initial load fails.
"""

import logging
import re
import shutil
import threading
from pathlib import Path

from deployer.tfserving import AVAILABLE, END
from tfserving_dev.config import parse_models_config, parse_monitoring_config
from tfserving_dev.errors import ServingError
from tfserving_dev.server import LocalModelServer

from .apply import now
from .resources import by_name

log = logging.getLogger(__name__)

PODS, CONFIGMAPS = by_name("pods"), by_name("configmaps")
MODES = ("crash_loop", "image_pull", "stall", "unschedulable")
# What the default scheduler says when no node fits (its FailedScheduling event and the pod's
# PodScheduled condition carry the same text).
UNSCHEDULABLE = (
    "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: "
    "1 No preemption victims found for incoming pod."
)


class _Stopped(Exception):
    pass


class Kubelet:
    def __init__(
        self,
        api,
        recorder,
        fetch_model,
        workdir: Path,
        *,
        backoff: float = 0.5,
        termination_seconds: float = 0.3,
        probe_seconds: float = 0.1,
    ):
        self.api = api
        self.recorder = recorder
        self.fetch_model = fetch_model
        self.workdir = Path(workdir)
        self.backoff = backoff
        self.termination_seconds = termination_seconds
        self.probe_seconds = probe_seconds
        self.node = "fake-node-1"
        self.failures: dict[tuple, str] = {}  # (namespace, deployment) -> mode, for pods started later
        self._pods: dict[tuple, PodRuntime] = {}
        self._lock = threading.Lock()
        self._addresses = iter(range(10, 1_000_000))

    def start(self, pod: dict, *, deployment: str) -> None:
        meta = pod["metadata"]
        key = (meta["namespace"], meta["name"])
        address = next(self._addresses)
        runtime = PodRuntime(
            self,
            pod,
            mode=self.failures.get((meta["namespace"], deployment)),
            ip=f"10.244.{address // 250}.{address % 250 + 2}",
        )
        with self._lock:
            self._pods[key] = runtime
        runtime.start()

    def terminate(self, namespace: str, name: str) -> dict | None:
        """Graceful deletion: the pod shows a deletionTimestamp while its containers stop, then goes."""

        def mark(pod):
            pod["metadata"]["deletionTimestamp"] = now()
            pod["metadata"]["deletionGracePeriodSeconds"] = pod["spec"].get("terminationGracePeriodSeconds", 30)

        pod = self.api.mutate(PODS, namespace, name, mark, manager="kube-apiserver")
        if pod is None:
            return None
        with self._lock:
            runtime = self._pods.pop((namespace, name), None)
        threading.Thread(
            target=self._finish, args=(runtime, namespace, name), daemon=True, name=f"terminate-{name}"
        ).start()
        return pod

    def _finish(self, runtime, namespace: str, name: str) -> None:
        if runtime:
            runtime.stop()
        threading.Event().wait(self.termination_seconds)
        with self.api.store.lock:
            if self.api.store.record(PODS, namespace, name):
                self.api.store.remove(PODS, namespace, name)
        if runtime:
            shutil.rmtree(runtime.root, ignore_errors=True)

    def runtime(self, namespace: str, name: str) -> "PodRuntime | None":
        with self._lock:
            return self._pods.get((namespace, name))

    def stop_all(self) -> None:
        with self._lock:
            runtimes, self._pods = list(self._pods.values()), {}
        # In parallel: each model server takes up to half a second to shut its HTTP loop down.
        stoppers = [threading.Thread(target=r.stop, daemon=True) for r in runtimes]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join(timeout=15)


class PodRuntime:
    """One pod's containers, run by one thread; every state change is a status write."""

    def __init__(self, kubelet: Kubelet, pod: dict, *, mode: str | None, ip: str):
        self.kubelet = kubelet
        self.api = kubelet.api
        self.pod = pod
        self.namespace = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.mode = mode
        self.ip = ip
        self.root = kubelet.workdir / "pods" / self.name
        self.server: LocalModelServer | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pod-{self.name}", daemon=True)
        spec = pod["spec"]
        self.init_containers = spec.get("initContainers") or []
        self.container = (spec.get("containers") or [{}])[0]
        self.restarts = 0
        self.probes = 0  # readiness probes made, so a test can wait for some instead of sleeping

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)
        self._stop_server()

    def rest_port(self) -> int | None:
        """The port tensorflow_model_server serves REST on: its --rest_api_port flag."""
        for arg in self.container.get("args") or []:
            if arg.startswith("--rest_api_port="):
                return int(arg.split("=", 1)[1])
        return None

    def server_url(self, port: int) -> str | None:
        server = self.server
        return server.url if server is not None and port == self.rest_port() else None

    # --- the pod's life ---

    def _run(self) -> None:
        try:
            if self.mode == "unschedulable":
                self._unschedulable()
            self._write(self._scheduled)
            self.kubelet.recorder.record(
                self.pod,
                "Normal",
                "Scheduled",
                f"Successfully assigned {self.namespace}/{self.name} to {self.kubelet.node}",
                component="default-scheduler",
            )
            self._initialize()
            {"crash_loop": self._crash_loop, "image_pull": self._image_pull}.get(self.mode, self._serve)()
        except _Stopped:
            pass
        except Exception:  # a bug here shows as a pod stuck in its last state; the log says why
            log.exception("fake pod %s failed", self.name)
        finally:
            self._stop_server()

    def _unschedulable(self) -> None:
        """No node fits: the pod stays Pending, PodScheduled False (Unschedulable), and the scheduler
        retries, repeating its FailedScheduling warning."""

        def pending(status):
            status["phase"] = "Pending"
            status["conditions"] = [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "lastProbeTime": None,
                    "lastTransitionTime": now(),
                    "reason": "Unschedulable",
                    "message": UNSCHEDULABLE,
                }
            ]

        self._write(pending)
        while True:
            self.kubelet.recorder.record(
                self.pod, "Warning", "FailedScheduling", UNSCHEDULABLE, component="default-scheduler"
            )
            self._sleep(self.kubelet.backoff * 4)

    def _sleep(self, seconds: float) -> None:
        if self._stopping.wait(seconds):
            raise _Stopped()

    def _write(self, change) -> None:
        if self._stopping.is_set():
            raise _Stopped()

        def mutate(pod):
            change(pod.setdefault("status", {}))

        if self.api.mutate(PODS, self.namespace, self.name, mutate, manager="kubelet", subresource="status") is None:
            raise _Stopped()

    def _warn(self, reason: str, message: str, container: str) -> None:
        self.kubelet.recorder.record(
            self.pod, "Warning", reason, message, component="kubelet", field_path=f"spec.containers{{{container}}}"
        )

    def _backoff(self) -> float:
        # The kubelet's 10 s doubling to 5 min, scaled down so tests see several restarts.
        return min(self.kubelet.backoff * 2 ** max(0, self.restarts - 1), self.kubelet.backoff * 8)

    def _scheduled(self, status: dict) -> None:
        status.update(
            {
                "phase": "Pending",
                "hostIP": "10.0.0.1",
                "podIP": self.ip,
                "podIPs": [{"ip": self.ip}],
                "startTime": now(),
            }
        )
        for kind, value in (
            ("PodReadyToStartContainers", "True"),
            ("Initialized", "False"),
            ("Ready", "False"),
            ("ContainersReady", "False"),
            ("PodScheduled", "True"),
        ):
            _condition(status, kind, value)
        status["initContainerStatuses"] = [
            _container(c, {"waiting": {"reason": "PodInitializing"}}) for c in self.init_containers
        ]
        status["containerStatuses"] = [_container(self.container, {"waiting": {"reason": "PodInitializing"}})]

    def _initialize(self) -> None:
        """Run the init containers; the first one fetches the model, retried with back-off on failure."""
        annotations = self.pod["metadata"].get("annotations") or {}
        model, version = annotations.get("modelgate.io/model-name"), annotations.get("modelgate.io/version")
        models = self.root / "models"
        models.mkdir(parents=True, exist_ok=True)
        for index, init in enumerate(self.init_containers):
            attempts = 0
            while True:
                self._write(lambda s: _set_state(s["initContainerStatuses"][index], {"running": {"startedAt": now()}}))  # noqa: B023 - called at once, inside the iteration
                try:
                    if index == 0 and model and version and self.kubelet.fetch_model:
                        self.kubelet.fetch_model(model, int(version), str(models))
                    break
                except _Stopped:
                    raise
                except Exception as exc:
                    attempts += 1
                    self._init_failed(index, init["name"], attempts, exc)
            self._write(
                lambda s: _set_state(
                    s["initContainerStatuses"][index],  # noqa: B023 - called at once, inside the iteration
                    {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now(), "finishedAt": now()}},
                    ready=True,
                )
            )
        self._write(lambda s: _condition(s, "Initialized", "True"))

    def _init_failed(self, index: int, name: str, attempts: int, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"[:1000]

        def crashed(status):
            entry = status["initContainerStatuses"][index]
            entry["restartCount"] = attempts
            entry["lastState"] = {
                "terminated": {"exitCode": 1, "reason": "Error", "message": message, "finishedAt": now()}
            }
            _set_state(
                entry,
                {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off restarting failed container={name} pod={self.name}",
                    }
                },
            )

        self._write(crashed)
        self._warn(
            "BackOff",
            f"Back-off restarting failed container {name} in pod "
            f"{self.name}_{self.namespace}({self.pod['metadata']['uid']})",
            name,
        )
        self._sleep(min(self.kubelet.backoff * 2 ** (attempts - 1), self.kubelet.backoff * 8))

    def _image_pull(self) -> None:
        image, name = self.container.get("image", ""), self.container.get("name", "")
        while True:
            for reason, event, message in (
                (
                    "ErrImagePull",
                    "Failed",
                    f'Failed to pull image "{image}": rpc error: code = NotFound desc = '
                    f'failed to pull and unpack image "{image}": not found',
                ),
                ("ImagePullBackOff", "BackOff", f'Back-off pulling image "{image}"'),
            ):
                self._write(
                    lambda s, r=reason: _set_state(
                        s["containerStatuses"][0],
                        {"waiting": {"reason": r, "message": f'Back-off pulling image "{image}"'}},
                    )
                )
                self._warn(event, message, name)
                self._sleep(self.kubelet.backoff)

    def _crash_loop(self) -> None:
        while True:
            self._running()
            self._sleep(self.kubelet.probe_seconds)
            self._crashed("Error", "the container exited with status 1")

    def _running(self) -> None:
        def running(status):
            status["phase"] = "Running"
            _set_state(status["containerStatuses"][0], {"running": {"startedAt": now()}})
            status["containerStatuses"][0]["started"] = True

        self._write(running)

    def _crashed(self, reason: str, message: str) -> None:
        self._stop_server()
        self.restarts += 1
        name = self.container.get("name", "")

        def crashed(status):
            entry = status["containerStatuses"][0]
            entry["restartCount"] = self.restarts
            entry["started"] = False
            entry["lastState"] = {
                "terminated": {"exitCode": 1, "reason": reason, "message": message[:1000], "finishedAt": now()}
            }
            _set_state(
                entry,
                {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off restarting failed container={name} pod={self.name}",
                    }
                },
            )
            _ready(status, False)

        self._write(crashed)
        self._warn(
            "BackOff",
            f"Back-off restarting failed container {name} in pod "
            f"{self.name}_{self.namespace}({self.pod['metadata']['uid']})",
            name,
        )
        self._sleep(self._backoff())

    def _serve(self) -> None:
        while True:
            config, metrics_path = self._mounted_config()
            loader = self._stalled_loader if self.mode == "stall" else None
            try:
                self.server = LocalModelServer(
                    config,
                    port=0,
                    poll_seconds=1.0,
                    metrics_path=metrics_path,
                    **({"loader": loader} if loader else {}),
                ).start()
            except Exception as exc:  # a models.config it cannot read: tensorflow_model_server exits too
                self._crashed("Error", f"{type(exc).__name__}: {exc}")
                continue
            self._running()
            failure = self._probe_until_failure(config)
            self._crashed("Error", failure)

    def _mounted_config(self) -> tuple[str, str | None]:
        """The config volume's models.config, with base paths under the models volume's mount
        pointed at this pod's directory. Waits, as the kubelet does, while the ConfigMap is missing."""
        volumes = {v["name"]: v for v in self.pod["spec"].get("volumes") or []}
        config_name = (volumes.get("config", {}).get("configMap") or {}).get("name", "")
        mounts = {m["name"]: m["mountPath"] for m in self.container.get("volumeMounts") or []}
        models_mount = mounts.get("models", "/models").rstrip("/")
        while True:
            config_map = self.api.store.get(CONFIGMAPS, self.namespace, config_name)
            if config_map is not None:
                break
            self._write(lambda s: _set_state(s["containerStatuses"][0], {"waiting": {"reason": "ContainerCreating"}}))
            self._warn(
                "FailedMount",
                f'MountVolume.SetUp failed for volume "config" : configmap "{config_name}" not found',
                self.container.get("name", ""),
            )
            self._sleep(self.kubelet.backoff)
        data = config_map.get("data") or {}
        root = str(self.root / "models")
        text = re.sub(
            r'(base_path:\s*")' + re.escape(models_mount) + r'(/|")',
            lambda m: m.group(1) + root + m.group(2),
            data.get("models.config", ""),
        )
        monitoring = data.get("monitoring.config")
        return text, (parse_monitoring_config(monitoring) if monitoring else None)

    def _stalled_loader(self, path):
        self._stopping.wait()
        raise RuntimeError("the pod was stopped while loading")

    def _probe_until_failure(self, config: str) -> str:
        """The readiness probe, every probe_seconds: Ready once all named versions are AVAILABLE.
        Returns why the server died (a version failed to load)."""
        wanted = [(c.name, v) for c in parse_models_config(config) for v in (c.versions or (None,))]
        ready = False
        while True:
            self._sleep(self.kubelet.probe_seconds)
            states = [self._state(name, version) for name, version in wanted]
            self.probes += 1
            failed = [s for s in states if s and s["state"] == END and s["status"]["error_code"] != "OK"]
            if failed:
                status = failed[0]["status"]
                return f"Loading servable failed: {status['error_code']}: {status['error_message']}"
            now_ready = bool(wanted) and all(s and s["state"] == AVAILABLE for s in states)
            if now_ready != ready:
                ready = now_ready
                self._write(lambda s, r=ready: _ready(s, r))

    def _state(self, name: str, version: int | None) -> dict | None:
        server = self.server
        if server is None:
            raise _Stopped()
        try:
            found = server.manager.status(name, version)
        except ServingError:
            return None  # not on disk yet: TF Serving keeps waiting for it
        return next((s for s in found if s["state"] == AVAILABLE), found[0]) if version is None else found[0]

    def _stop_server(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.stop()


def _container(spec: dict, state: dict) -> dict:
    return {
        "name": spec.get("name", ""),
        "image": spec.get("image", ""),
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "started": False,
        "state": state,
        "lastState": {},
    }


def _set_state(entry: dict, state: dict, *, ready: bool = False) -> None:
    entry["state"] = state
    entry["ready"] = ready


def _condition(status: dict, kind: str, value: str) -> None:
    conditions = status.setdefault("conditions", [])
    current = next((c for c in conditions if c["type"] == kind), None)
    if current is None:
        conditions.append({"type": kind, "status": value, "lastProbeTime": None, "lastTransitionTime": now()})
    elif current["status"] != value:
        current.update(status=value, lastTransitionTime=now())


def _ready(status: dict, ready: bool) -> None:
    value = "True" if ready else "False"
    _condition(status, "ContainersReady", value)
    _condition(status, "Ready", value)
    entry = status["containerStatuses"][0]
    entry["ready"] = ready
    if ready:
        entry["started"] = True
