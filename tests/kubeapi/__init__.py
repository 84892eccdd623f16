"""A Kubernetes API server for tests, with a simulated control plane and kubelet.

    with FakeKubeApiServer(fetch_model=fetch) as server:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig", namespace="ml")
        ...  # the real `kubernetes` client, over HTTP, with that kubeconfig

It serves what Modelgate uses: ConfigMaps, Services, Deployments and HorizontalPodAutoscalers
(get, list, watch, create, server-side apply, update, delete), ReplicaSets, Pods and Events
(read; pods may also be deleted), and the pod proxy. Pods really run: the init container calls
fetch_model, the serving container is deployer.local_server's TF Serving stand-in.

Modules: status (Status errors), resources (the types served), fields + apply (field paths and
server-side apply), validation (defaults and 422s), selectors, store (objects, resourceVersion,
watch history), api (the verbs), controller (Deployment, ReplicaSet, HPA, garbage collection),
pods (kubelet), events, handler (HTTP), server (FakeKubeApiServer and the test hooks).

Where it is simpler than a real API server, knowingly:
- Server-side apply tracks ownership per leaf path with a fixed table of list merge keys (not
  the OpenAPI schema); no structured-merge-diff type checks, no `last-applied-configuration`.
- Only apply patches: JSON, strategic-merge and merge patches answer 415. Bodies are JSON (valid
  YAML); other YAML is refused with 400.
- Validation covers names, labels, annotation keys, the Deployment selector (must match, cannot
  change), required containers, Service ports and HPA bounds; unknown fields are kept silently
  (the manifest tests run kubernetes-validate in strict mode instead).
- Defaulting covers what clients read back most (replicas, strategy, revisionHistoryLimit,
  progressDeadlineSeconds, pod and container defaults, clusterIP...), not every field.
- One namespace-agnostic store, no Namespace objects, no RBAC (every valid token may do
  anything; `calls` records the RBAC verbs for tests to check), no admission, no finalizers.
  Deletion propagates in the background only; pods terminate gracefully in
  `termination_seconds`, other objects go at once.
- Controllers tick every `tick` seconds in one thread. The Deployment controller sees ReplicaSet
  status one tick late, like the real separate loops (so the stale ProgressDeadlineExceeded after a
  rollback is reproduced). The HPA has no metrics: it only keeps replicas within its bounds.
  minReadySeconds, paused rollouts' conditions and collision counts are not modelled.
- The kubelet probes readiness every `probe_seconds` (not the manifest's periods); back-offs start
  at `backoff` seconds instead of 10 s; only the REST port (`--rest_api_port`) serves, so the pod
  proxy answers 503 for any other port; ConfigMap changes do not reach running pods.
- Watches: no bookmarks, no `sendInitialEvents`, no DELETED for objects leaving a label selector;
  list has no pagination (`limit`/`continue` are ignored).
"""

from .handler import Call
from .server import FakeKubeApiServer

__all__ = ["Call", "FakeKubeApiServer"]
