"""FakeKubeApiServer: the pieces put together, plus the hooks tests use to steer the cluster."""

from __future__ import annotations  # the classes below have a method named list

import hmac
import json
import secrets
import shutil
import socket
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

from tfserving_dev import tensors

from . import resources
from .api import Api
from .controller import Controllers
from .dataplane import Chooser
from .events import Recorder
from .handler import Call, handler_class
from .pods import MODES, Kubelet
from .status import ApiError
from .store import Store


class FakeKubeApiServer:
    """A Kubernetes API server on 127.0.0.1 with a simulated control plane and kubelet.

    fetch_model(model, version, model_root) is what a pod's init container does: lay the
    version out as <model_root>/<model>/<version>/saved_model.pb (or raise, and the pod stays
    in Init). Times are scaled for tests: controllers tick every `tick` seconds, crash-loop
    back-off starts at `backoff` seconds, deleted pods take `termination_seconds` to go.
    """

    def __init__(
        self,
        *,
        fetch_model=None,
        token: str | None = None,
        workdir: str | Path | None = None,
        tick: float = 0.1,
        backoff: float = 0.5,
        termination_seconds: float = 0.3,
        history: int = 2000,
        watch_timeout: float = 60.0,
        seed: int = 17,
    ):
        self.token = token or secrets.token_urlsafe(24)
        self.watch_timeout = watch_timeout
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="fake-kube-"))
        self.store = Store(history)
        self.api = Api(self.store)
        self.recorder = Recorder(self.api, host="fake-node-1")
        self.kubelet = Kubelet(
            self.api,
            self.recorder,
            fetch_model,
            self.workdir,
            backoff=backoff,
            termination_seconds=termination_seconds,
            probe_seconds=min(tick, 0.1),
        )
        self.api.delete_pod = self.kubelet.terminate
        self.controllers = Controllers(self.api, self.recorder, self.kubelet, tick=tick)
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._faults: list[dict] = []
        self._watch_410 = 0
        self._connections: set = set()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_class(self))
        self._httpd.daemon_threads = True
        self._serving: threading.Thread | None = None
        self._crd_groups: set[str] = set()
        # The service proxy's (and a GatewayStandIn's) random picks, seeded: see dataplane.py.
        self.chooser = Chooser(seed)

    # --- lifecycle ---

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeKubeApiServer:
        if self.kubelet.fetch_model is not None:
            # Pods load SavedModels in this process, and the first load imports TensorFlow: 8-13 s
            # on a loaded 2-core machine, longer than a test target's progress deadline (4 s), so
            # the first rollout of a process failed with ProgressDeadlineExceeded (and its pods then
            # logged "Could not find SavedModel" as the rollout's cleanup removed their volumes).
            # A real pod's tensorflow_model_server starts in about a second; the import is this
            # test process's cost, paid here before any Deployment's progress clock starts.
            tensors.import_tensorflow()
        self.controllers.start()
        self._serving = threading.Thread(target=self._httpd.serve_forever, name="fake-kube-apiserver", daemon=True)
        self._serving.start()
        return self

    def stop(self) -> None:
        self.store.stop()  # ends open watches
        self.controllers.stop()
        self.kubelet.stop_all()  # stops every pod's model server
        self._httpd.shutdown()
        self._httpd.server_close()
        # Keep-alive connections outlive serve_forever; a stopped server must not answer on them.
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> FakeKubeApiServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def write_kubeconfig(self, path, context: str = "test", namespace: str = "default") -> Path:
        """A kubeconfig for this server (token auth, plain HTTP), for the client to load. JSON
        strings are valid YAML scalars, so values are written quoted."""
        q = json.dumps
        text = (
            f"apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {q(self.url)}\n"
            f"users:\n- name: fake-user\n  user:\n    token: {q(self.token)}\n"
            f"contexts:\n- name: {q(context)}\n  context:\n    cluster: fake\n    user: fake-user\n"
            f"    namespace: {q(namespace)}\ncurrent-context: {q(context)}\n"
        )
        path = Path(path)
        path.write_text(text)
        path.chmod(0o600)
        return path

    # --- what tests read ---

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        return self.store.get(resources.by_name(kind), namespace, name)

    def list(self, kind: str, namespace: str | None = None, *, label_selector: str | None = None) -> list[dict]:
        resource = resources.by_name(kind)
        return self.store.list(resource, namespace, self.api.matcher(resource, label_selector, None))

    def history(self, kind: str, namespace: str, name: str) -> list[tuple[str, dict]]:
        """Every (event type, object) of one object still in the watch history, oldest first."""
        plural = resources.by_name(kind).plural
        return [
            (e.type, e.obj)
            for e in self.store.retained()
            if e.plural == plural and e.namespace == namespace and e.obj["metadata"]["name"] == name
        ]

    def wait_for(self, condition, *, timeout: float = 30.0, interval: float = 0.05, message: str = ""):
        """Poll condition() until it returns something truthy; return that."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {message or condition}")
            time.sleep(interval)

    # --- what tests change ---

    def edit(self, kind: str, namespace: str, name: str, mutate, manager: str = "kubectl-edit") -> dict:
        """An out-of-band Update, as `kubectl edit` makes: the manager takes ownership of what it changed."""
        changed = self.api.mutate(resources.by_name(kind), namespace, name, mutate, manager=manager)
        if changed is None:
            raise KeyError(f"{kind} {namespace}/{name} does not exist")
        return changed

    def install_gateway_api(self) -> None:
        """As `kubectl apply -f standard-install.yaml` of the Gateway API: HTTPRoutes are served
        from now on (before, their paths answer 404 as on a cluster without the CRDs)."""
        with self._lock:
            self._crd_groups.add(resources.by_name("httproutes").group)

    def serves(self, resource) -> bool:
        with self._lock:
            return not resource.crd or resource.group in self._crd_groups

    def label_namespace(self, namespace: str, labels: dict) -> None:
        """Set a namespace's labels (there are no Namespace objects), e.g.
        {"pod-security.kubernetes.io/enforce": "restricted"}: PodSecurity admission reads them."""
        self.api.namespace_labels[namespace] = dict(labels)

    def fail_pods(self, namespace: str, deployment: str, mode: str) -> None:
        """Pods the Deployment starts from now on fail: crash_loop, image_pull (ImagePullBackOff),
        stall (never ready, no error) or unschedulable (Pending, no node fits)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.kubelet.failures[(namespace, deployment)] = mode

    def clear_failures(self, namespace: str | None = None, deployment: str | None = None) -> None:
        for key in list(self.kubelet.failures):
            if namespace in (None, key[0]) and deployment in (None, key[1]):
                del self.kubelet.failures[key]

    def expire_watch_history(self) -> None:
        """As an etcd compaction: watches from any resourceVersion before now answer 410 Expired."""
        self.store.expire_history()

    def inject_watch_410(self, count: int = 1) -> None:
        """The next `count` watches answer at once with an ERROR event: 410 Expired."""
        with self._lock:
            self._watch_410 += count

    def inject_error(
        self,
        code: int,
        *,
        count: int = 1,
        verb: str | None = None,
        resource: str | None = None,
        message: str | None = None,
        retry_after: bool | None = None,
    ) -> None:
        """The next `count` requests matching verb/resource (any, if None) answer this Status code.
        Retry-After is sent with a 429 unless retry_after says otherwise."""
        with self._lock:
            self._faults.append(
                {
                    "code": code,
                    "count": count,
                    "verb": verb,
                    "resource": resource,
                    "message": message or f"injected failure ({code})",
                    "retry_after": retry_after,
                }
            )

    # --- used by the handler ---

    def connection_opened(self, connection) -> None:
        with self._lock:
            self._connections.add(connection)

    def connection_closed(self, connection) -> None:
        with self._lock:
            self._connections.discard(connection)

    def token_matches(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.token.encode())

    def record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def take_fault(self, call: Call | None) -> None:
        if call is None:
            return
        with self._lock:
            for fault in self._faults:
                if (
                    fault["count"] > 0
                    and fault["verb"] in (None, call.verb)
                    and fault["resource"] in (None, call.resource)
                ):
                    fault["count"] -= 1
                    raise ApiError(fault["code"], fault["message"], retry_after=fault["retry_after"])

    def take_watch_410(self) -> bool:
        with self._lock:
            if self._watch_410 > 0:
                self._watch_410 -= 1
                return True
            return False
