"""A stand-in for a Gateway API implementation's data plane (Envoy Gateway, Istio, NGINX
Gateway Fabric...): one Gateway, listening on 127.0.0.1, that routes each request by the
HTTPRoutes stored in the test API server.

    with GatewayStandIn(kube, name="edge", namespace="gateways") as gateway:
        urllib.request.urlopen(f"{gateway.url}/v1/models/iris/labels/staging:predict", ...)

Per request, as the Gateway API spec asks of an implementation:
- the routes are those whose `parentRefs` name this Gateway (kind Gateway, group
  gateway.networking.k8s.io, the namespace defaulting to the route's own), as the controller
  below last took them (a change reaches the data plane only once it is accepted);
- a rule matches by path: `Exact`, or `PathPrefix` matching whole segments (`/v1/models/iris`
  matches `/v1/models/iris/labels/x:predict`, not `/v1/models/irises`), an exact match taking
  precedence over a prefix and a longer prefix over a shorter (the HTTPRoute precedence rules);
  no match answers 404;
- a backendRef is chosen by weight: "Weight specifies the proportion of requests forwarded to the
  referenced backend. This is computed as weight/(sum of all weights in this BackendRefs list)
  ... If weight is set to 0, no traffic should be forwarded for this entry. If unspecified,
  weight defaults to 1." (kubernetes-sigs/gateway-api: an HTTPRoute rule's `HTTPBackendRef`,
  apis/v1/httproute_types.go, embeds `BackendRef`, whose `Weight` field says so in
  apis/v1/shared_types.go);
  a rule whose weights are all 0 answers 500, as the spec says for a rule with no valid
  backend. The choice is random per request (Envoy's weighted clusters), seeded (dataplane.Chooser);
- the chosen Service's port (`backendRefs[].port`, the Service port) leads to a ready endpoint
  of that Service, chosen at random (dataplane.endpoints); none answers 503, as Envoy's
  "no healthy upstream".

It is the Gateway's controller too: a thread that, `status_delay` seconds after it first sees a
generation of an attached route, writes that route's `status.parents` entry for this Gateway
through the status subresource (Api.update_status), as a Gateway API implementation must
(kubernetes-sigs/gateway-api apis/v1/shared_types.go at commit 014ea85, RouteParentStatus and
RouteStatus: "the controller that manages the parent must add an entry to this list"):
`parentRef` as in the spec, `controllerName` CONTROLLER_NAME, and the conditions
RouteConditionAccepted (True, reason Accepted) and RouteConditionResolvedRefs (True, reason
ResolvedRefs; False, reason BackendNotFound, when a backendRef's Service does not exist), each
with observedGeneration = the route's metadata.generation. Entries of other controllers are
kept; ResolvedRefs is re-evaluated on every pass (a Service created or deleted later). With
`controller=False` it writes no status and programs whatever is stored, as before.

Not modelled: the Gateway object itself (it is taken as existing and Accepted), listeners,
hostnames, header/query matches, filters, ReferenceGrants, cross-namespace backends, TLS.
"""

import copy
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from . import dataplane, resources
from .apply import now
from .status import ApiError

log = logging.getLogger(__name__)
GROUP = "gateway.networking.k8s.io"
CONTROLLER_NAME = "example.net/gateway-stand-in"  # a GatewayClass controllerName: DOMAIN "/" PATH
POLL_SECONDS = 0.05


def _parents(route: dict, name: str, namespace: str) -> bool:
    route_namespace = route["metadata"].get("namespace")
    for parent in (route.get("spec") or {}).get("parentRefs") or []:
        if parent.get("group", GROUP) == GROUP and parent.get("kind", "Gateway") == "Gateway":
            if parent.get("name") == name and parent.get("namespace", route_namespace) == namespace:
                return True
    return False


def _matches(match: dict, path: str) -> tuple[int, int] | None:
    """How specific a match of ``path`` is (exact first, then prefix length), or None."""
    spec = match.get("path") or {"type": "PathPrefix", "value": "/"}
    kind, value = spec.get("type", "PathPrefix"), spec.get("value", "/")
    if kind == "Exact":
        return (1, len(value)) if path == value else None
    if kind == "PathPrefix":
        prefix = value.rstrip("/")
        if path == prefix or path.startswith(prefix + "/") or prefix == "":
            return (0, len(prefix))
    return None


def route_for(routes: list[dict], path: str) -> tuple[dict, dict] | None:
    """(route, rule) whose match of ``path`` is the most specific."""
    best = None
    for route in routes:
        for rule in (route.get("spec") or {}).get("rules") or []:
            for match in rule.get("matches") or [{}]:
                rank = _matches(match, path)
                if rank is not None and (best is None or rank > best[0]):
                    best = (rank, route, rule)
    return (best[1], best[2]) if best else None


class GatewayStandIn:
    def __init__(self, kube, *, name: str, namespace: str, status_delay: float = 0.2, controller: bool = True):
        self.kube, self.name, self.namespace = kube, name, namespace
        self.status_delay = status_delay  # how long the controller takes to take a new generation
        self.controller = controller
        self.chosen: list[str] = []  # the Service each routed request went to, in order
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._reconciler: threading.Thread | None = None
        self._first_seen: dict[tuple, float] = {}  # (namespace, name, generation) -> monotonic time
        self._programmed: dict[tuple, dict] = {}  # (namespace, name) -> the route as last accepted
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> "GatewayStandIn":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="gateway-stand-in", daemon=True)
        self._thread.start()
        if self.controller:
            self._reconciler = threading.Thread(target=self._reconcile_loop, name="gateway-controller", daemon=True)
            self._reconciler.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._reconciler is not None:
            self._reconciler.join(timeout=5)
        self._httpd.shutdown()
        self._httpd.server_close()

    def attached(self) -> list[dict]:
        """The stored routes whose parentRefs name this Gateway."""
        return [r for r in self.kube.list("httproutes") if _parents(r, self.name, self.namespace)]

    def routes(self) -> list[dict]:
        """What the data plane routes by: each attached route as the controller last accepted it."""
        if not self.controller:
            return self.attached()
        live = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in self.attached()}
        with self._lock:
            return [copy.deepcopy(r) for key, r in sorted(self._programmed.items()) if key in live]

    # --- the controller ---

    def _reconcile_loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.reconcile()
            except Exception:
                log.exception("gateway stand-in controller failed")

    def reconcile(self) -> None:
        """One pass: each attached route whose generation has been seen for status_delay gets its
        status entry (written only when it changes) and is programmed when Accepted."""
        for route in self.attached():
            meta = route["metadata"]
            key = (meta["namespace"], meta["name"], meta.get("generation", 1))
            first = self._first_seen.setdefault(key, time.monotonic())
            if time.monotonic() - first < self.status_delay:
                continue
            with self._lock:
                self._programmed[key[:2]] = route
            self._write_status(route)

    def _write_status(self, route: dict) -> None:
        meta = route["metadata"]
        generation = meta.get("generation", 1)
        existing = (route.get("status") or {}).get("parents") or []
        mine = [e for e in existing if e.get("controllerName") == CONTROLLER_NAME]
        missing = [
            f"{ref.get('namespace', meta['namespace'])}/{ref.get('name')}"
            for rule in (route.get("spec") or {}).get("rules") or []
            for ref in rule.get("backendRefs") or []
            if ref.get("group", "") == ""
            and ref.get("kind", "Service") == "Service"
            and self.kube.get("Service", ref.get("namespace", meta["namespace"]), ref.get("name")) is None
        ]
        resolved = (
            ("False", "BackendNotFound", f"Service {', '.join(missing)} not found")
            if missing
            else ("True", "ResolvedRefs", "Resolved all the Object references for the Route")
        )
        conditions = [("Accepted", "True", "Accepted", "Route is accepted"), ("ResolvedRefs", *resolved)]
        entries = []
        for ref in (route.get("spec") or {}).get("parentRefs") or []:
            if not _parents({"metadata": meta, "spec": {"parentRefs": [ref]}}, self.name, self.namespace):
                continue
            before = next((e for e in mine if e.get("parentRef") == ref), {})
            old = {c["type"]: c for c in before.get("conditions") or []}
            entries.append(
                {
                    "parentRef": copy.deepcopy(ref),
                    "controllerName": CONTROLLER_NAME,
                    "conditions": [
                        {
                            "type": kind,
                            "status": status,
                            "reason": reason,
                            "message": message,
                            "observedGeneration": generation,
                            # Moves only when the status does (metav1.Condition lastTransitionTime).
                            "lastTransitionTime": (old.get(kind) or {}).get("lastTransitionTime")
                            if (old.get(kind) or {}).get("status") == status
                            else now(),
                        }
                        for kind, status, reason, message in conditions
                    ],
                }
            )
        parents = [e for e in existing if e.get("controllerName") != CONTROLLER_NAME] + entries
        if parents == existing:
            return
        body = {
            "apiVersion": f"{GROUP}/v1",
            "kind": "HTTPRoute",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "resourceVersion": meta["resourceVersion"],
            },
            "status": {"parents": parents},
        }
        try:
            self.kube.api.update_status(
                resources.by_name("httproutes"), meta["namespace"], meta["name"], body, manager="gateway-stand-in"
            )
        except ApiError as error:  # 409: the route changed meanwhile; the next pass writes again
            log.debug("gateway stand-in: status of %s/%s not written: %s", meta["namespace"], meta["name"], error)

    def backend(self, path: str) -> tuple[str, str, int]:
        """(namespace, Service, Service port) for one request to ``path``; ApiError otherwise."""
        found = route_for(self.routes(), path)
        if found is None:
            raise ApiError(404, "no route matches")
        route, rule = found
        refs = [
            ref
            for ref in rule.get("backendRefs") or []
            if ref.get("group", "") == "" and ref.get("kind", "Service") == "Service"
        ]
        ref = self.kube.chooser.weighted(refs, [int(ref.get("weight", 1)) for ref in refs])
        if ref is None:
            raise ApiError(500, "no backend with a weight")
        namespace = ref.get("namespace", route["metadata"]["namespace"])
        self.chosen.append(ref["name"])
        return namespace, ref["name"], ref["port"]


def _handler(gateway: GatewayStandIn):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # as Envoy does on its connections (see handler.py's reason)

        def _handle(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                namespace, service, port = gateway.backend(split.path)
                pod, number = dataplane.pick_endpoint(gateway.kube, namespace, service, str(port), gateway.kube.chooser)
                headers = {"Content-Type": self.headers["Content-Type"]} if self.headers.get("Content-Type") else {}
                status, content_type, payload = dataplane.forward(
                    gateway.kube, pod, number, self.command, split.path.lstrip("/"), body, headers, split.query
                )
            except ApiError as error:
                status, content_type = error.code, "text/plain"
                payload = b"no healthy upstream" if error.code == 503 else error.message.encode()
            except Exception:
                log.exception("gateway stand-in failed on %s %s", self.command, self.path)
                status, content_type, payload = 500, "text/plain", b"internal error"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
            log.debug("%s - %s", self.address_string(), format % args)

    return Handler
