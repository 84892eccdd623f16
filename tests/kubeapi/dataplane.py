"""Where client traffic goes: a Service's ready endpoints, and the forwarding to one pod.

A cluster's data plane (the endpoints controller, kube-proxy, a Gateway implementation) is not
part of an API server; the test API server has none, so these are its smallest stand-ins:

- A Service's endpoints are the pods its selector matches, whatever Deployment made them, that
  are Ready and not terminating: what the endpoints controller publishes as a subset's ready
  `addresses` (pods with a deletionTimestamp are left out unless the Service publishes
  not-ready addresses; pkg/controller/endpoint/endpoints_controller.go, via
  endpointutil.ShouldPodBeInEndpoints). Here they are read at each request, with no
  controller lag.
- The API server's service proxy (`/api/v1/namespaces/{ns}/services/{[scheme:]name[:port]}/proxy/...`)
  sends each request to one endpoint chosen at random: kube-apiserver's service REST
  `ResourceLocation` (pkg/registry/core/service/storage/storage.go:414-484, kubernetes/kubernetes
  as the search index holds it) turns a port number into the Service port's name (:429-439),
  then picks a random subset (`ssSeed := rand.Intn(len(eps.Subsets))`, :451) and in it a random
  ready address (`addrSeed := rand.Intn(len(ss.Addresses))`, :460), and answers 503 "no
  endpoints available for service" when there is none (:446-449). kube-proxy spreads connections at random too (iptables mode's
  `statistic --mode random` rules), so a basic canary's share is its share of the ready pods,
  as a proportion over many requests and never exactly.
- gateway.py: a Gateway that reads HTTPRoutes.
"""

import random
import threading
import urllib.error
import urllib.request

from .status import ApiError

# Pod servers are on 127.0.0.1: never through an HTTP(S)_PROXY from the environment.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Chooser:
    """A seeded random choice shared by threads: the same sequence of picks in every run, so
    a split measured over a few hundred requests does not change from run to run."""

    def __init__(self, seed: int = 17):
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def choice(self, items: list):
        with self._lock:
            return items[self._rng.randrange(len(items))]

    def weighted(self, items: list, weights: list[int]):
        """One of ``items`` with probability weight / sum(weights); None when every weight is 0."""
        total = sum(weights)
        if total <= 0:
            return None
        with self._lock:
            point = self._rng.randrange(total)
        for item, weight in zip(items, weights, strict=True):
            if point < weight:
                return item
            point -= weight
        raise AssertionError("unreachable")


def _ready(pod: dict) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def endpoints(server, namespace: str, service: dict) -> list[dict]:
    """The ready, not terminating pods a Service selects (none without a selector)."""
    selector = (service.get("spec") or {}).get("selector") or {}
    if not selector:
        return []
    found = []
    for pod in server.list("pods", namespace):
        labels = pod["metadata"].get("labels") or {}
        if all(labels.get(k) == v for k, v in selector.items()) and not pod["metadata"].get("deletionTimestamp"):
            if _ready(pod) and (pod.get("status") or {}).get("podIP"):
                found.append(pod)
    return sorted(found, key=lambda p: p["metadata"]["name"])


def service_port(service: dict, port: str | None) -> dict | None:
    """The Service port a proxy path names: by number (the Service's port, as ResourceLocation
    looks it up) or by name; no port names the Service's one unnamed port."""
    ports = (service.get("spec") or {}).get("ports") or []
    if port is not None and port.isdigit():
        return next((p for p in ports if p.get("port") == int(port)), None)
    return next((p for p in ports if (p.get("name") or "") == (port or "")), None)


def container_port(pod: dict, target) -> int | None:
    """A Service port's targetPort on one pod: a number, or a container port's name."""
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    declared = [p for c in pod["spec"].get("containers") or [] for p in c.get("ports") or []]
    return next((p["containerPort"] for p in declared if p.get("name") == target), None)


def pick_endpoint(server, namespace: str, name: str, port: str | None, chooser: Chooser) -> tuple[dict, int]:
    """(pod, container port) for one request to a Service, or the API server's 503."""
    service = server.get("Service", namespace, name)
    if service is None:
        raise ApiError(404, f'services "{name}" not found', reason="NotFound")
    chosen = service_port(service, port)
    if chosen is None:
        if port is not None and port.isdigit():
            raise ApiError(503, f'no service port {port} found for service "{name}"')
        raise ApiError(503, f'no endpoints available for service "{name}"')
    pods = endpoints(server, namespace, service)
    if not pods:
        raise ApiError(503, f'no endpoints available for service "{name}"')
    pod = chooser.choice(pods)
    number = container_port(pod, chosen.get("targetPort", chosen.get("port")))
    if number is None:
        raise ApiError(503, f'no endpoints available for service "{name}"')
    return pod, number


def forward(
    server, pod: dict, port: int, method: str, path: str, body: bytes, headers: dict, raw_query: str
) -> tuple[int, str, bytes]:
    """One request to a pod's port: (status, content type, payload). Raises the proxy's 503
    when nothing listens there (the pod's server stopped, or another port)."""
    namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    runtime = server.kubelet.runtime(namespace, name)
    url = runtime.server_url(port) if runtime else None
    ip = (pod.get("status") or {}).get("podIP", "")
    refused = ApiError(503, f"error trying to reach service: dial tcp {ip}:{port}: connect: connection refused")
    if url is None:
        raise refused
    request = urllib.request.Request(
        f"{url}/{path}" + (f"?{raw_query}" if raw_query else ""),
        data=body if method not in ("GET", "HEAD") else None,
        headers=headers,
        method=method,
    )
    try:
        with DIRECT.open(request, timeout=60) as answer:
            return answer.status, answer.headers.get("Content-Type") or "application/octet-stream", answer.read()
    except urllib.error.HTTPError as answer:
        return answer.code, answer.headers.get("Content-Type") or "application/octet-stream", answer.read()
    except OSError:
        raise refused from None
