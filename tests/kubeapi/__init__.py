"""A Kubernetes API server for tests, with a simulated control plane and kubelet.

    with FakeKubeApiServer(fetch_model=fetch) as server:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig", namespace="ml")
        ...  # the real `kubernetes` client, over HTTP, with that kubeconfig

It serves what Modelgate uses: ConfigMaps, Services, Deployments and HorizontalPodAutoscalers
(get, list, watch, create, server-side apply, update, delete), ReplicaSets, Pods and Events
(read; pods may also be deleted), the pod proxy and the service proxy; Gateway API HTTPRoutes too once
`install_gateway_api()` has "installed" their CRD (before, their paths answer the real 404).
Each Deployment has its own ReplicaSets and pods, whatever other Deployments share their labels
(a canary beside the stable one), as ownerReferences decide on a real cluster. Pods really run: the init container calls
fetch_model, the serving container is the TF Serving development server (tfserving_dev).

Modules: status (Status errors), resources (the types served), fields + apply (field paths and
server-side apply), schema (apply's unknown fields), crds (the HTTPRoute CRD's schema),
validation (defaults and 422s), podsecurity
(PodSecurity admission), selectors, store (objects, resourceVersion,
watch history), api (the verbs), controller (Deployment, ReplicaSet, HPA, garbage collection),
pods (kubelet), events, handler (HTTP), server (FakeKubeApiServer and the test hooks),
dataplane (a Service's ready endpoints, one chosen at random per request, and the forwarding to
a pod), gateway (GatewayStandIn).

Client traffic: an API server has no data plane, so two stand-ins carry it, as small as they
can be and no part of a real API server's behaviour:
- The service proxy (`/api/v1/namespaces/{ns}/services/{name}[:{port}]/proxy/{path}`) is the real
  server's: each request goes to one ready, not terminating pod the Service selects, whatever
  Deployment made it, chosen at random (kube-apiserver's ResourceLocation, see dataplane.py).
  With a basic canary the canary's share is then its share of the ready pods, as with
  kube-proxy, approximately.
- GatewayStandIn (gateway.py) stands for a Gateway API implementation (Envoy Gateway, Istio...):
  its own HTTP server on 127.0.0.1 for one named Gateway, which per request reads the stored
  HTTPRoutes attached to it, picks a backendRef by weight and forwards to a ready pod of that
  Service. No Gateway object, listeners, hostnames, filters or route status.
Both pick with one seeded random generator (`seed`), so a split comes out the same from run
to run for the same sequence of requests.

Where it is simpler than a real API server, knowingly:
- Server-side apply tracks ownership per leaf path with a fixed table of list merge keys (not
  the OpenAPI schema); no structured-merge-diff type checks, no `last-applied-configuration`.
- Only apply patches: JSON, strategic-merge and merge patches answer 415. Bodies are JSON (valid
  YAML); other YAML is refused with 400.
- Validation covers names, labels, annotation keys, the Deployment selector (must match, cannot
  change), required containers, Service ports, HPA bounds, and for HTTPRoutes the CRD's schema
  plus its one CEL rule Modelgate could break (a Service backendRef needs a port); no gateway
  controller writes a route's status. An apply with a field the schema
  does not declare answers the real 500 (schema.py); other type errors are not checked (the
  manifest tests run kubernetes-validate in strict mode), and creates and updates keep unknown
  fields silently.
- Defaulting covers what clients read back most (replicas, strategy, revisionHistoryLimit,
  progressDeadlineSeconds, pod and container defaults, clusterIP...), not every field.
- One namespace-agnostic store, no Namespace objects (`label_namespace` sets the labels
  admission reads), no RBAC (every valid token may do anything; `calls` records the RBAC verbs
  for tests to check), no finalizers. The only admission is PodSecurity (podsecurity.py):
  enforce on pod creates (the ReplicaSet controller's, which then records FailedCreate and
  ReplicaFailure), warn on Deployments (a `Warning` header). The ReplicaSet controller retries a
  refused create every `backoff` seconds.
  Deletion propagates in the background only; pods terminate gracefully in
  `termination_seconds`, other objects go at once.
- Controllers tick every `tick` seconds in one thread. The Deployment controller sees ReplicaSet
  status one tick late, like the real separate loops (so the stale ProgressDeadlineExceeded after a
  rollback is reproduced). The HPA has no metrics: it only keeps replicas within its bounds.
  minReadySeconds, paused rollouts' conditions and collision counts are not modelled.
- The kubelet probes readiness every `probe_seconds` (not the manifest's periods); back-offs start
  at `backoff` seconds instead of 10 s; only the REST port (`--rest_api_port`) serves, so the pod
  proxy answers 503 for any other port; ConfigMap changes do not reach running pods.
- Endpoints are read from the pods at each proxied request: no Endpoints or EndpointSlice
  objects, no endpoints controller lag.
- Watches: no bookmarks, no `sendInitialEvents`, no DELETED for objects leaving a label selector;
  list has no pagination (`limit`/`continue` are ignored).
"""

from .handler import Call
from .server import FakeKubeApiServer

__all__ = ["Call", "FakeKubeApiServer"]
