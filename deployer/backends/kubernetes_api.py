"""The Kubernetes API, as the Kubernetes backend needs it: apply rendered manifests, follow the
rollout, look at the pods (the backend itself, in the pipeline's interface, is kubernetes.py).

Every call goes through the official `kubernetes` client with a private ApiClient (never the
process-wide default), so two backends for two clusters cannot mix credentials. Objects go in
and come out as plain dicts, the way manifests.py renders them and the API server answers: the
client's typed models are skipped (`_preload_content=False`) because they drop fields they do
not know and turn timestamps into datetimes, and drift detection needs the server's exact answer.

Errors are sorted for the rollout pipeline (see errors.py) by what the API server's Status says,
not by the HTTP code alone: its reason first (Invalid, BadRequest, Forbidden... are permanent;
ServerTimeout, TooManyRequests, ServiceUnavailable, Conflict... are worth a retry), and a schema
error is permanent even though a real server answers it with a 500 and no reason (server-side
apply's "failed to create typed patch object (...): .spec.foo: field not declared in schema").
Without a reason, a 5xx, 409, 429 or a connection problem is a TransientError; any other 4xx, or
a kubeconfig that cannot work, is a PermanentError. Messages carry the API server's own message,
never credentials.

A rollout fails as soon as it is plainly stuck, not only at its progress deadline: when the
Deployment reports ReplicaFailure (its pods are refused, e.g. by PodSecurity admission), or a pod
of the new template is in ImagePullBackOff, CrashLoopBackOff or cannot be scheduled. The reason
quotes the cause (rollout_status.replica_failure and pod_failure).
"""

import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from deployer.backends.errors import PermanentError, RolloutTimeout, TransientError
from deployer.manifests import CANARY_MANAGER, MANAGER, TRACK_LABEL, canary_name
from deployer.rollout_status import RolloutFailed, deployment_status, pod_failure, replica_failure
from deployer.tfserving import REST_PORT

log = logging.getLogger(__name__)

APPLY_PATCH = "application/apply-patch+yaml"
INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
VERSION_LABEL = "modelgate.io/version"
MAX_EVENTS = 20
# How often a rollout's pods are looked at while the Deployment's watch is quiet: a pod stuck in a
# back-off changes no Deployment field, so the watch alone would wait for the progress deadline.
POD_CHECK_SECONDS = 1.0


# What Modelgate applies: (apiVersion, kind) -> (typed API, the suffix of its *_namespaced_* methods),
# or for a custom resource (CustomObjectsApi, its group, version and plural). Keyed as objects are
# looked up: an object without one of the fields gives None.
@dataclass(frozen=True)
class _Custom:
    group: str
    version: str
    plural: str


_KINDS: dict[tuple[str | None, str | None], tuple[type, str | _Custom]] = {
    ("v1", "ConfigMap"): (client.CoreV1Api, "namespaced_config_map"),
    ("v1", "Service"): (client.CoreV1Api, "namespaced_service"),
    ("apps/v1", "Deployment"): (client.AppsV1Api, "namespaced_deployment"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): (client.AutoscalingV2Api, "namespaced_horizontal_pod_autoscaler"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): (
        client.CustomObjectsApi,
        _Custom("gateway.networking.k8s.io", "v1", "httproutes"),
    ),
}
# The route goes first, so no traffic is sent to a Service about to go.
_DELETE_ORDER: dict[str | None, int] = {
    "HTTPRoute": 0,
    "HorizontalPodAutoscaler": 1,
    "Deployment": 2,
    "Service": 3,
    "ConfigMap": 4,
}
# Without the CRD the API server knows no such path: kube-apiserver's CRD handler passes the
# request on and the last handler answers a bare 404 NotFound (see tests/kubeapi/handler.py).
_NO_CRD = (
    "the cluster does not serve {group}/{version} {plural}: install the Gateway API CRDs (standard "
    "channel, v1.0 or later), or clear the target's Gateway to split traffic by pod counts"
)


class _Expired(Exception):
    """The watch's resourceVersion is too old (410): list again, then watch from the list."""


class _Silent(Exception):
    """A watch read timed out: nothing happened within the time the caller had left."""


class KubernetesApi:
    def __init__(
        self,
        *,
        namespace: str,
        kubeconfig: str | None = None,
        context: str | None = None,
        in_cluster: bool = False,
        request_timeout: float = 30.0,
    ):
        self.namespace = namespace
        self.request_timeout = request_timeout
        self._client = _api_client(kubeconfig, context, in_cluster)
        self._apis: dict[type, Any] = {cls: cls(self._client) for cls, _ in _KINDS.values()}
        self._core = self._apis[client.CoreV1Api]
        self._apps = self._apis[client.AppsV1Api]

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "KubernetesApi":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- objects ---

    def apply(self, objects: list[dict]) -> list[dict]:
        """Server-side apply, in order, as field manager "modelgate" with force: Modelgate owns
        what it renders, so an out-of-band edit of those fields is overwritten, not a conflict."""
        applied = []
        for obj in objects:
            _, kind, name = self._target(obj)
            hint = _NO_CRD.format(**kind.__dict__) if isinstance(kind, _Custom) else None
            with _translated(f"Applying {obj['kind']} {self.namespace}/{name}", missing_hint=hint):
                response = self._call(
                    "patch",
                    obj,
                    obj,
                    field_manager=MANAGER,
                    force=True,
                    _content_type=APPLY_PATCH,
                    _preload_content=False,
                    _request_timeout=self.request_timeout,
                )
            applied.append(_body(response))
            log.info("Applied %s %s/%s", obj["kind"], self.namespace, name)
        return applied

    def read(self, objects: list[dict]) -> list[dict | None]:
        """The live version of each object, None where it does not exist."""
        found = []
        for obj in objects:
            _, _, name = self._target(obj)
            with _translated(f"Reading {obj['kind']} {self.namespace}/{name}", missing_ok=True) as outcome:
                outcome.value = _body(
                    self._call("read", obj, _preload_content=False, _request_timeout=self.request_timeout)
                )
            found.append(outcome.value)
        return found

    def delete(self, objects: list[dict]) -> None:
        """Delete the objects, whatever order they come in, route first, then autoscaler and
        Deployment: no pod is left reading a deleted ConfigMap. Objects already gone are fine."""
        for obj in sorted(objects, key=lambda o: _DELETE_ORDER.get(o.get("kind"), len(_DELETE_ORDER))):
            _, _, name = self._target(obj)
            with _translated(f"Deleting {obj['kind']} {self.namespace}/{name}", missing_ok=True):
                self._call(
                    "delete",
                    obj,
                    propagation_policy="Background",
                    _preload_content=False,
                    _request_timeout=self.request_timeout,
                )

    def _target(self, obj: dict):
        try:
            api_class, kind = _KINDS[(obj.get("apiVersion"), obj.get("kind"))]
        except KeyError:
            raise PermanentError(
                f"The Kubernetes backend does not manage {obj.get('apiVersion')} {obj.get('kind')} objects."
            ) from None
        meta = obj.get("metadata") or {}
        if meta.get("namespace", self.namespace) != self.namespace:
            raise PermanentError(
                f"{obj['kind']} {meta.get('name')} is rendered for namespace "
                f"{meta['namespace']!r}, but this backend deploys to {self.namespace!r}."
            )
        return self._apis[api_class], kind, meta["name"]

    def _call(self, verb: str, obj: dict, *args, **kwargs):
        """read, patch or delete one object through its typed API, or CustomObjectsApi's
        *_namespaced_custom_object for a custom resource (which says get for read)."""
        api, kind, name = self._target(obj)
        if isinstance(kind, _Custom):
            method = getattr(api, f"{'get' if verb == 'read' else verb}_namespaced_custom_object")
            return method(kind.group, kind.version, self.namespace, kind.plural, name, *args, **kwargs)
        return getattr(api, f"{verb}_{kind}")(name, self.namespace, *args, **kwargs)

    # --- rollout ---

    def wait_for_rollout(
        self, name: str, *, timeout: float, progress: Callable[[str], None] = lambda message: None
    ) -> dict:
        """Wait as `kubectl rollout status` does: evaluate the Deployment, then re-evaluate on every
        change seen by a watch from its resourceVersion; after a 410 list again and watch on.
        Raises RolloutFailed (ProgressDeadlineExceeded), RolloutTimeout, or the API's errors.

        As with kubectl, re-applying a template whose ReplicaSet still exists (a rollback) can raise
        RolloutFailed at once: the controller's first status after it may still carry the failed
        rollout's ProgressDeadlineExceeded, until it sees that ReplicaSet's pods go."""
        deadline = time.monotonic() + timeout
        shown = None
        latest: dict = {}  # the Deployment as last seen: done() sets it before the loop reads it

        def done(deployment: dict) -> bool:
            nonlocal shown, latest
            latest = deployment
            try:
                status = deployment_status(deployment)
            except RolloutFailed as deadline:  # say why no progress was made, when the pods tell
                cause = self._stuck(deployment)
                raise RolloutFailed(f"{deadline}: {cause}" if cause else str(deadline)) from None
            if status.message != shown:
                shown = status.message
                progress(status.message)
            if not status.done and (failure := replica_failure(deployment)):
                raise RolloutFailed(f"Deployment {self.namespace}/{name} cannot create its pods: {failure}")
            return status.done

        deployment = self._read_deployment(name)
        version = deployment["metadata"]["resourceVersion"]
        if done(deployment):
            return deployment
        while (remaining := deadline - time.monotonic()) > 0:
            self._check_pods(latest)
            try:
                for kind, obj in self._watch(name, version, min(remaining, POD_CHECK_SECONDS)):
                    version = obj["metadata"]["resourceVersion"]
                    if kind == "DELETED":
                        raise PermanentError(f"Deployment {self.namespace}/{name} was deleted during its rollout.")
                    if kind != "BOOKMARK" and done(obj):
                        return obj
                    if time.monotonic() >= deadline:
                        break
            except _Expired:
                deployment, version = self._relist(name)
                if done(deployment):
                    return deployment
        raise RolloutTimeout(
            f"Deployment {self.namespace}/{name} did not finish rolling out within {timeout:g} s: {shown}"
        )

    def _check_pods(self, deployment: dict) -> None:
        """Raise RolloutFailed when a pod of the Deployment's current template is stuck."""
        if failure := self._stuck_pod(deployment):
            raise RolloutFailed(f"Deployment {self.namespace}/{deployment['metadata']['name']}: {failure}")

    def _stuck(self, deployment: dict) -> str | None:
        failure = replica_failure(deployment)
        return f"cannot create its pods: {failure}" if failure else self._stuck_pod(deployment)

    def _stuck_pod(self, deployment: dict) -> str | None:
        """Why a pod of the Deployment's current template cannot become ready, if it is stuck. Pods
        carry the template's annotations (rollout id, config hash), which tell them from older pods."""
        template = (deployment.get("spec") or {}).get("template") or {}
        wanted = (template.get("metadata") or {}).get("annotations") or {}
        match = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if not match:
            return None
        for pod in self._pods(",".join(f"{k}={v}" for k, v in sorted(match.items()))):
            annotations = pod["metadata"].get("annotations") or {}
            if pod["metadata"].get("deletionTimestamp") or any(annotations.get(k) != v for k, v in wanted.items()):
                continue
            if failure := pod_failure(pod):
                return failure
        return None

    def _read_deployment(self, name: str) -> dict:
        with _translated(f"Reading Deployment {self.namespace}/{name}"):
            return _body(
                self._apps.read_namespaced_deployment(
                    name, self.namespace, _preload_content=False, _request_timeout=self.request_timeout
                )
            )

    def _relist(self, name: str) -> tuple[dict, str]:
        """A list by name gives the object and a resourceVersion the server can watch from."""
        with _translated(f"Listing Deployment {self.namespace}/{name}"):
            listed = _body(
                self._apps.list_namespaced_deployment(
                    self.namespace,
                    field_selector=f"metadata.name={name}",
                    _preload_content=False,
                    _request_timeout=self.request_timeout,
                )
            )
        if not listed["items"]:
            raise PermanentError(f"Deployment {self.namespace}/{name} was deleted during its rollout.")
        return listed["items"][0], listed["metadata"]["resourceVersion"]

    def _watch(self, name: str, version: str, remaining: float) -> Iterator[tuple[str, dict]]:
        """(event type, object) from one watch request, which the server ends after the time left.

        Our own loop rather than kubernetes.watch.Watch: in 37.x, Watch retries a 410 with the same
        expired resourceVersion instead of listing again, builds a default ApiClient of its own, and
        with deserialize=False cannot read an ERROR event (KeyError 'raw_object')."""
        action = f"Watching Deployment {self.namespace}/{name}"
        try:
            with _translated(action, watching=True):
                response = self._apps.list_namespaced_deployment(
                    self.namespace,
                    field_selector=f"metadata.name={name}",
                    resource_version=version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=max(1, math.ceil(remaining)),
                    watch=True,
                    _preload_content=False,
                    # The server's timeoutSeconds is whole seconds; silence until the deadline is ours.
                    _request_timeout=(self.request_timeout, remaining),
                )
        except _Silent:
            return
        try:
            with _translated(action, watching=True):
                for line in _lines(response):
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        status = event["object"]
                        if status.get("code") == 410:
                            raise _Expired()
                        raise _classify(
                            status.get("code") or 500,
                            status.get("message") or "watch failed",
                            action,
                            reason=status.get("reason") or "",
                        )
                    yield event["type"], event["object"]
        except _Silent:
            return  # nothing changed before the deadline: the caller times out
        finally:
            # Closed, not just released: a connection with an unread stream must not go back to the pool.
            response.close()
            response.release_conn()

    # --- pods ---

    def deployment_replicas(self, name: str) -> dict:
        """The cheap part of deployment_health, for the metrics scraper every 10 s: counts and
        pod names from one Deployment read and one pod list, no events. The pods are those of
        the instance, a canary's included, each with its track (`modelgate.io/track`; pods
        rendered before tracks existed are stable); the counts are the stable Deployment's."""
        deployment = self._read_deployment(name)
        pods = [p for p in self._pods(f"{INSTANCE_LABEL}={name}") if not p["metadata"].get("deletionTimestamp")]
        status = deployment.get("status") or {}
        return {
            "desired": (deployment.get("spec") or {}).get("replicas", 1),
            "ready": status.get("readyReplicas", 0),
            "pods": sorted(p["metadata"]["name"] for p in pods),
            "serving": sorted(p["metadata"]["name"] for p in pods if _ready(p)),
            "tracks": {p["metadata"]["name"]: _track(p) for p in pods},
        }

    def serving_pods(self, name: str, *, version: int | None = None, track: str = "stable") -> list[str]:
        """Names of the instance's Ready pods of one track that are not terminating (optionally of
        one version). A canary's pods share the instance label and differ in managed-by."""
        manager = CANARY_MANAGER if track == "canary" else MANAGER
        selector = f"{INSTANCE_LABEL}={name},{MANAGED_BY_LABEL}={manager}" + (
            f",{VERSION_LABEL}={version}" if version is not None else ""
        )
        return sorted(
            p["metadata"]["name"]
            for p in self._pods(selector)
            if not p["metadata"].get("deletionTimestamp") and _ready(p)
        )

    def _pods(self, selector: str) -> list[dict]:
        with _translated(f"Listing pods {selector} in {self.namespace}"):
            return _body(
                self._core.list_namespaced_pod(
                    self.namespace,
                    label_selector=selector,
                    _preload_content=False,
                    _request_timeout=self.request_timeout,
                )
            )["items"]

    def proxy(
        self, pod: str, method: str, path: str, body: dict | None = None, port: int = REST_PORT
    ) -> tuple[int, dict | str]:
        """One HTTP request to a pod through the API server's pod proxy: (status, JSON or text).

        The typed connect_*_namespaced_pod_proxy_with_path methods cannot send a body and
        percent-encode the '/' of the path, so the request is built here with the client's own
        serializer (same auth, same timeouts). A non-2xx answer from TF Serving is returned; one
        from the API server itself (a Status object) raises like every other API error."""
        resource_path = (
            f"/api/v1/namespaces/{quote(self.namespace, safe='')}/pods/{quote(pod, safe='')}:{port}"
            f"/proxy/{quote(path.lstrip('/'), safe='/:?=&')}"
        )
        headers = {"Accept": "application/json, */*"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        action = f"{method} {path} on pod {self.namespace}/{pod}"
        with _translated(action):
            request = self._client.param_serialize(
                method=method.upper(),
                resource_path=resource_path,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self._client.call_api(*request, _request_timeout=self.request_timeout)
            payload = response.read()
        text = payload.decode("utf-8", errors="replace")
        try:
            answer = json.loads(text)
        except ValueError:
            answer = text
        if (
            not 200 <= response.status < 300
            and isinstance(answer, dict)
            and answer.get("kind") == "Status"
            and answer.get("apiVersion") == "v1"
        ):
            raise _classify(
                response.status, answer.get("message") or response.reason, action, reason=answer.get("reason") or ""
            )
        return response.status, answer

    def deployment_health(self, name: str) -> dict:
        """What an operator looks at when a rollout is stuck: counts, the Deployment's failure
        conditions (ReplicaFailure, a Progressing that gave up), each pod's state and why, and the
        latest Warning events of the Deployment, its ReplicaSets and its pods (newest first): a
        pod PodSecurity refused exists only as its ReplicaSet's FailedCreate event. During a
        canary its Deployment's pods, counts, conditions and warnings are in it too, each pod
        with its track: both serve the environment's traffic."""
        health = self._one_deployment_health(self._read_deployment(name))
        with _translated(f"Reading Deployment {self.namespace}/{canary_name(name)}", missing_ok=True) as outcome:
            outcome.value = _body(
                self._apps.read_namespaced_deployment(
                    canary_name(name), self.namespace, _preload_content=False, _request_timeout=self.request_timeout
                )
            )
        canary = outcome.value
        if canary is not None:
            more = self._one_deployment_health(canary)
            for key in ("desired", "updated", "ready", "available"):
                health[key] += more[key]
            health["conditions"] += more["conditions"]
            health["pods"] += more["pods"]
            health["events"] = sorted(
                health["events"] + more["events"], key=lambda e: e["last_seen"] or "", reverse=True
            )[:MAX_EVENTS]
        return health

    def _one_deployment_health(self, deployment: dict) -> dict:
        name = deployment["metadata"]["name"]
        # The Deployment's own selector: a canary's pods share the instance label, not the selector.
        match = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        pods = self._pods(",".join(f"{k}={v}" for k, v in sorted(match.items())) or f"{INSTANCE_LABEL}={name}")
        status = deployment.get("status") or {}
        return {
            "desired": (deployment.get("spec") or {}).get("replicas", 1),
            "updated": status.get("updatedReplicas", 0),
            "ready": status.get("readyReplicas", 0),
            "available": status.get("availableReplicas", 0),
            "conditions": [
                {"type": c.get("type"), "reason": c.get("reason"), "message": c.get("message")}
                for c in status.get("conditions") or []
                if (c.get("type") == "ReplicaFailure" and c.get("status") == "True")
                or (c.get("type") == "Progressing" and c.get("status") == "False")
            ],
            "pods": [_pod_health(p) for p in pods],
            "events": self._warnings(name, {p["metadata"]["name"] for p in pods}),
        }

    def _warnings(self, name: str, pod_names: set) -> list[dict]:
        with _translated(f"Listing events in {self.namespace}"):
            events = _body(
                self._core.list_namespaced_event(
                    self.namespace,
                    field_selector="type=Warning",
                    _preload_content=False,
                    _request_timeout=self.request_timeout,
                )
            )["items"]
        # Objects already replaced still explain a failure: ReplicaSets are <deployment>-<template
        # hash>, their pods <deployment>-<template hash>-<suffix>.
        replica_set = re.compile(rf"^{re.escape(name)}-[a-z0-9]+\Z")
        pod = re.compile(rf"^{re.escape(name)}-[a-z0-9]+-[a-z0-9]+\Z")

        def ours(involved: dict) -> bool:
            kind, other = involved.get("kind"), involved.get("name", "")
            return (
                (kind == "Pod" and (other in pod_names or bool(pod.match(other))))
                or (kind == "ReplicaSet" and bool(replica_set.match(other)))
                or (kind == "Deployment" and other == name)
            )

        mine = [e for e in events if ours(e.get("involvedObject") or {})]
        mine.sort(key=_last_seen, reverse=True)
        return [
            {
                "reason": e.get("reason"),
                "message": e.get("message"),
                "type": e.get("type"),
                "kind": e["involvedObject"].get("kind"),
                "object": e["involvedObject"].get("name"),
                "count": e.get("count") or (e.get("series") or {}).get("count") or 1,
                "last_seen": _last_seen(e),
            }
            for e in mine[:MAX_EVENTS]
        ]


# --- configuration ---


def _api_client(kubeconfig: str | None, context: str | None, in_cluster: bool) -> client.ApiClient:
    if in_cluster:
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise PermanentError(
                f"In-cluster Kubernetes configuration is unusable ({exc}); run in a pod with a "
                "service account, or give a kubeconfig instead."
            ) from None
        return client.ApiClient(configuration)
    if not kubeconfig:
        raise PermanentError(
            "No Kubernetes credentials: give the target a kubeconfig path, or in_cluster=True "
            "when Modelgate runs inside the cluster."
        )
    path = Path(kubeconfig).expanduser()
    if not path.is_file():
        raise PermanentError(f"Kubeconfig {path} does not exist or is not a file: fix the target's kubeconfig path.")
    try:
        return config.new_client_from_config(config_file=str(path), context=context, persist_config=False)
    except yaml.YAMLError as exc:
        # Not the parser's message: it may quote the file, and the file holds the token.
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise PermanentError(f"Kubeconfig {path} is not valid YAML{where}: regenerate it.") from None
    except OSError as exc:
        raise PermanentError(f"Kubeconfig {path} cannot be read ({exc.strerror}): check its permissions.") from None
    except ConfigException as exc:
        known = _context_names(path)
        if context and context not in known:
            raise PermanentError(
                f"Kubeconfig {path} has no context {context!r} (it has: "
                f"{', '.join(known) or 'none'}): fix the target's context."
            ) from None
        raise PermanentError(f"Kubeconfig {path} is unusable: {exc}") from None


def _context_names(path: Path) -> list[str]:
    try:
        contexts, _ = config.list_kube_config_contexts(config_file=str(path))
    except (ConfigException, OSError, yaml.YAMLError):
        return []
    return [c["name"] for c in contexts]


# --- errors ---


class _Outcome:
    value = None


@contextmanager
def _translated(action: str, *, missing_ok: bool = False, watching: bool = False, missing_hint: str | None = None):
    """Turn the client's exceptions into TransientError / PermanentError, saying what failed.
    missing_ok: a 404 is an answer, not an error. watching: a read timeout means the watch saw
    nothing within the time left. missing_hint: what a 404 means here (an apply creates what is
    missing, so its 404 says the type itself is unknown)."""
    outcome = _Outcome()
    try:
        yield outcome
    except ApiException as exc:
        if exc.status == 404 and missing_ok:
            return
        if exc.status == 404 and missing_hint:
            message = _api_status(exc).get("message") or exc.reason or "not found"
            raise PermanentError(f"{action}: {message} (HTTP 404): {missing_hint}.") from None
        if exc.status == 410:  # only a watch or list names a resourceVersion that can expire
            raise _Expired() from None
        status = _api_status(exc)
        raise _classify(
            exc.status, status.get("message") or exc.reason or "no message", action, reason=status.get("reason") or ""
        ) from None
    except urllib3.exceptions.ReadTimeoutError as exc:
        if watching:
            raise _Silent() from None
        raise TransientError(f"{action}: the Kubernetes API server did not answer in time ({_reason(exc)}).") from None
    except urllib3.exceptions.HTTPError as exc:  # connection refused or reset, timeouts, broken streams
        raise TransientError(
            f"{action}: the Kubernetes API server did not answer ({type(exc).__name__}: {_reason(exc)})."
        ) from None


# Status reasons (k8s.io/apimachinery/pkg/apis/meta/v1/types.go StatusReason*) a retry cannot fix,
# and those worth one, whatever the HTTP code they came with.
_PERMANENT_REASONS = {
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "MethodNotAllowed",
    "Invalid",
    "UnsupportedMediaType",
    "NotAcceptable",
    "RequestEntityTooLarge",
    "Gone",
}
_TRANSIENT_REASONS = {
    "ServerTimeout",
    "Timeout",
    "TooManyRequests",
    "ServiceUnavailable",
    "Conflict",
    "AlreadyExists",
    "InternalError",
}
# A request the server cannot even type-check: server-side apply answers these with a 500 and no
# reason (apiserver handlers/patch.go passes the field manager's error through unwrapped).
_SCHEMA_ERRORS = (
    "failed to create typed patch object",
    "field not declared in schema",
    "error decoding patch",
    "error strict decoding",
    "unable to unmarshal the patch",
)


def _classify(code: int, message: str, action: str, *, reason: str = "") -> Exception:
    text = f"{action}: {message} (HTTP {code})"
    if code == 0:  # the client failed before any answer (e.g. TLS): not something a retry fixes
        return PermanentError(text)
    if any(marker in message for marker in _SCHEMA_ERRORS):
        return PermanentError(f"{text}: the manifest has a field the API server's schema does not know.")
    if code == 401 or reason == "Unauthorized":
        return PermanentError(f"{text}: the kubeconfig's credentials were refused.")
    if code == 403 or reason == "Forbidden":
        return PermanentError(f"{text}: the service account lacks a permission (see the RBAC role).")
    if reason in _PERMANENT_REASONS:
        return PermanentError(text)
    if reason in _TRANSIENT_REASONS or code in (409, 429) or code >= 500:
        return TransientError(text)
    return PermanentError(text)


def _api_status(exc: ApiException) -> dict:
    """The Status object the API server sent with an error ({} when the body is not one)."""
    try:
        status = json.loads(exc.body or "")
    except ValueError:
        return {}
    return status if isinstance(status, dict) else {}


def _reason(exc: urllib3.exceptions.HTTPError) -> str:
    reason = getattr(exc, "reason", None) or exc
    return str(reason)[:300]


# --- helpers ---


def _body(response) -> dict:
    try:
        return json.loads(response.data)
    finally:
        response.release_conn()


def _lines(response) -> Iterator[str]:
    """Newline-delimited watch events from a chunked response, however the chunks split them."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        yield from (line.decode() for line in complete if line.strip())
    if buffer.strip():
        yield buffer.decode()


def _ready(pod: dict) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _pod_health(pod: dict) -> dict:
    status = pod.get("status") or {}
    statuses = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
    return {
        "name": pod["metadata"]["name"],
        "phase": status.get("phase"),
        "ready": _ready(pod),
        "restarts": sum(c.get("restartCount", 0) for c in statuses),
        "reason": _pod_reason(pod),
        "version": (pod["metadata"].get("labels") or {}).get(VERSION_LABEL),
        "track": _track(pod),
        "message": pod_failure(pod),
    }


def _track(pod: dict) -> str:
    return (pod["metadata"].get("labels") or {}).get(TRACK_LABEL) or "stable"


def _pod_reason(pod: dict) -> str | None:
    """The STATUS column of `kubectl get pods`: Init:CrashLoopBackOff, ImagePullBackOff, Terminating..."""
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status") or {}
    for entry in status.get("initContainerStatuses") or []:
        state = entry.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason") != "PodInitializing":
            return f"Init:{state['waiting'].get('reason')}"
        if "terminated" in state and state["terminated"].get("exitCode"):
            return f"Init:{state['terminated'].get('reason') or 'Error'}"
    for entry in status.get("containerStatuses") or []:
        state = entry.get("state") or {}
        if "waiting" in state:
            return state["waiting"].get("reason")
        if "terminated" in state:
            return state["terminated"].get("reason")
    return status.get("reason")


def _last_seen(event: dict) -> str:
    return (
        event.get("lastTimestamp")
        or (event.get("series") or {}).get("lastObservedTime")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or event["metadata"].get("creationTimestamp")
        or ""
    )
