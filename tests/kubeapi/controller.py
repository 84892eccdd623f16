"""kube-controller-manager in miniature: the Deployment, ReplicaSet, HPA and garbage collectors.

Ported from pkg/controller/deployment (rolling.go, sync.go, progress.go) where it decides
what a client can observe: how many pods of each template exist, when old pods go, and the
status `kubectl rollout status` reads (see progress.py). The Deployment and ReplicaSet
controllers run one after the other on each tick, and the Deployment controller sees ReplicaSet
status as of the previous tick, as with the real, separate loops. That lag is visible: after
rolling back to an older ReplicaSet, one status update can still say ProgressDeadlineExceeded.
"""

import copy
import json
import logging
import math
import secrets
import threading
import time
from datetime import datetime

from . import progress
from .apply import now
from .resources import by_name
from .status import ApiError

log = logging.getLogger(__name__)

DEPLOYMENTS, REPLICASETS, PODS = by_name("deployments"), by_name("replicasets"), by_name("pods")
AUTOSCALERS = by_name("horizontalpodautoscalers")
MANAGER = "kube-controller-manager"
REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
_SAFE = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand: no vowels, no look-alikes


def template_hash(template: dict) -> str:
    """FNV-32a of the template, encoded as the real controller encodes it (rand.SafeEncodeString)."""
    digest = 0x811C9DC5
    for byte in json.dumps(template, sort_keys=True).encode():
        digest = ((digest ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE[ord(c) % len(_SAFE)] for c in str(digest))


def random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(_SAFE) for _ in range(length))


def owner_reference(obj: dict) -> dict:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owner_uid(obj: dict) -> str | None:
    refs = obj["metadata"].get("ownerReferences") or []
    return next((r["uid"] for r in refs if r.get("controller")), None)


def is_ready(pod: dict) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def is_active(pod: dict) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and (pod.get("status") or {}).get("phase") not in (
        "Succeeded",
        "Failed",
    )


def _revision(rs: dict) -> int:
    return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))


def _resolve(value, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        exact = total * int(value[:-1]) / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value or 0)


def surge_and_unavailable(deployment: dict) -> tuple[int, int]:
    spec = deployment["spec"]
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    desired = spec.get("replicas", 1)
    surge = _resolve(rolling.get("maxSurge", "25%"), desired, True)
    unavailable = _resolve(rolling.get("maxUnavailable", "25%"), desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # the real controller's rule: a rollout must be able to move
    return surge, min(unavailable, desired)


def _rs_status(rs: dict) -> dict:
    return rs.get("status") or {}


class Controllers:
    def __init__(self, api, recorder, kubelet, *, tick: float = 0.1):
        self.api = api
        self.store = api.store
        self.recorder = recorder
        self.kubelet = kubelet
        self.tick = tick
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress_at: dict[str, float] = {}  # deployment uid -> monotonic time of last progress
        self._create_retry_at: dict[str, float] = {}  # ReplicaSet uid -> when a failed create is tried again

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fake-kube-controllers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopped.wait(self.tick):
            try:
                self.sync()
            except Exception:  # a bug in one tick must not stop the cluster; the test will see it stall
                log.exception("fake controller tick failed")

    def sync(self) -> None:
        with self.store.lock:
            self._collect_garbage()
            for deployment in self.store.list(DEPLOYMENTS):
                self._sync_deployment(deployment)
            for autoscaler in self.store.list(AUTOSCALERS):
                self._sync_autoscaler(autoscaler)
            for rs in self.store.list(REPLICASETS):
                self._sync_replica_set(rs)

    # --- garbage collector: dependents of deleted owners go too (background propagation) ---

    def _collect_garbage(self) -> None:
        deployments = {d["metadata"]["uid"] for d in self.store.list(DEPLOYMENTS)}
        for rs in self.store.list(REPLICASETS):
            if owner_uid(rs) and owner_uid(rs) not in deployments:
                self.store.remove(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"])
        sets = {rs["metadata"]["uid"] for rs in self.store.list(REPLICASETS)}
        for pod in self.store.list(PODS):
            if owner_uid(pod) and owner_uid(pod) not in sets and not pod["metadata"].get("deletionTimestamp"):
                self.kubelet.terminate(pod["metadata"]["namespace"], pod["metadata"]["name"])

    # --- Deployment controller ---

    def _sync_deployment(self, deployment: dict) -> None:
        meta, spec = deployment["metadata"], deployment["spec"]
        owned = [rs for rs in self.store.list(REPLICASETS, meta["namespace"]) if owner_uid(rs) == meta["uid"]]
        new_rs, created = self._new_replica_set(deployment, owned)
        old = sorted(
            (rs for rs in owned if rs["metadata"]["uid"] != new_rs["metadata"]["uid"]),
            key=lambda rs: rs["metadata"]["creationTimestamp"],
        )
        if not spec.get("paused"):
            if (spec.get("strategy") or {}).get("type") == "Recreate":
                new_rs, old = self._recreate(deployment, new_rs, old)
            else:
                new_rs = self._scale_up_new(deployment, new_rs, old)
                old = self._scale_down_old(deployment, new_rs, old)
        self._write_status(deployment, new_rs, old, created)
        self._clean_history(deployment, old)

    def _new_replica_set(self, deployment: dict, owned: list) -> tuple[dict, bool]:
        """The ReplicaSet running this template: found (maybe an old one again: a rollback) or created."""
        template = deployment["spec"]["template"]
        newest = max((_revision(rs) for rs in owned), default=0)
        for rs in owned:
            theirs = copy.deepcopy(rs["spec"]["template"])
            theirs["metadata"]["labels"].pop(HASH_LABEL, None)
            if theirs == template:
                if _revision(rs) < newest:  # rolled back to: it becomes the newest revision again
                    rs = self._annotate(rs, {REVISION: str(newest + 1)})
                self._annotate_deployment(deployment, _revision(rs))
                return rs, False
        digest = template_hash(template)
        name = f"{deployment['metadata']['name']}-{digest}"
        pod_template = copy.deepcopy(template)
        pod_template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = digest
        selector = copy.deepcopy(deployment["spec"]["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = digest
        rs = self.api.create_internal(
            REPLICASETS,
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": name,
                    "namespace": deployment["metadata"]["namespace"],
                    "labels": copy.deepcopy(pod_template["metadata"]["labels"]),
                    "annotations": {REVISION: str(newest + 1)},
                    "ownerReferences": [owner_reference(deployment)],
                },
                "spec": {"replicas": 0, "selector": selector, "template": pod_template},
            },
            manager=MANAGER,
        )
        self._annotate_deployment(deployment, newest + 1)
        return rs, True

    def _annotate(self, rs: dict, annotations: dict) -> dict:
        def change(obj):
            obj["metadata"].setdefault("annotations", {}).update(annotations)

        meta = rs["metadata"]
        return self.api.mutate(REPLICASETS, meta["namespace"], meta["name"], change, manager=MANAGER)

    def _annotate_deployment(self, deployment: dict, revision: int) -> None:
        def change(obj):
            obj["metadata"].setdefault("annotations", {})[REVISION] = str(revision)

        meta = deployment["metadata"]
        if (meta.get("annotations") or {}).get(REVISION) != str(revision):
            updated = self.api.mutate(DEPLOYMENTS, meta["namespace"], meta["name"], change, manager=MANAGER)
            deployment["metadata"] = updated["metadata"]

    def _scale(self, deployment: dict, rs: dict, replicas: int) -> dict:
        before = rs["spec"].get("replicas", 0)
        if replicas == before:
            return rs
        meta = rs["metadata"]

        def change(obj):
            obj["spec"]["replicas"] = replicas

        rs = self.api.mutate(REPLICASETS, meta["namespace"], meta["name"], change, manager=MANAGER)
        direction = "up" if replicas > before else "down"
        self.recorder.record(
            deployment,
            "Normal",
            "ScalingReplicaSet",
            f"Scaled {direction} replica set {meta['name']} from {before} to {replicas}",
            component="deployment-controller",
        )
        return rs

    def _scale_up_new(self, deployment: dict, new_rs: dict, old: list) -> dict:
        """NewRSNewReplicas: grow the new ReplicaSet up to maxSurge above the desired count."""
        desired = deployment["spec"].get("replicas", 1)
        current = new_rs["spec"].get("replicas", 0)
        if current >= desired:
            return self._scale(deployment, new_rs, desired)
        surge, _ = surge_and_unavailable(deployment)
        total = current + sum(rs["spec"].get("replicas", 0) for rs in old)
        room = desired + surge - total
        return self._scale(deployment, new_rs, current + min(room, desired - current)) if room > 0 else new_rs

    def _scale_down_old(self, deployment: dict, new_rs: dict, old: list) -> list:
        """reconcileOldReplicaSets: first drop old pods that are not available anyway, then old
        available ones only as far as maxUnavailable allows."""
        if not any(rs["spec"].get("replicas", 0) for rs in old):
            return old
        desired = deployment["spec"].get("replicas", 1)
        _, max_unavailable = surge_and_unavailable(deployment)
        min_available = desired - max_unavailable
        every = old + [new_rs]
        all_count = sum(rs["spec"].get("replicas", 0) for rs in every)
        new_unavailable = new_rs["spec"].get("replicas", 0) - _rs_status(new_rs).get("availableReplicas", 0)
        budget = all_count - min_available - new_unavailable
        if budget <= 0:
            return old
        cleaned = 0
        for n, rs in enumerate(old):
            replicas, available = rs["spec"].get("replicas", 0), _rs_status(rs).get("availableReplicas", 0)
            if cleaned >= budget:
                break
            if replicas == 0 or replicas == available:
                continue
            cut = min(budget - cleaned, replicas - available)
            old[n] = self._scale(deployment, rs, replicas - cut)
            cleaned += cut
        available = sum(_rs_status(rs).get("availableReplicas", 0) for rs in old + [new_rs])
        to_remove, removed = available - min_available, 0
        for n, rs in enumerate(old):
            replicas = rs["spec"].get("replicas", 0)
            if removed >= to_remove:
                break
            if replicas == 0:
                continue
            cut = min(replicas, to_remove - removed)
            old[n] = self._scale(deployment, rs, replicas - cut)
            removed += cut
        return old

    def _recreate(self, deployment: dict, new_rs: dict, old: list) -> tuple[dict, list]:
        old = [self._scale(deployment, rs, 0) for rs in old]
        if any(_rs_status(rs).get("replicas", 0) for rs in old):
            return new_rs, old  # every old pod must be gone before a new one starts
        return self._scale(deployment, new_rs, deployment["spec"].get("replicas", 1)), old

    def _write_status(self, deployment: dict, new_rs: dict, old: list, created: bool) -> None:
        meta = deployment["metadata"]
        uid = meta["uid"]
        previous = deployment.get("status") or {}
        if created:
            previous = progress.created(previous, new_rs["metadata"]["name"])
            self._progress_at[uid] = time.monotonic()
            self._save_status(meta, previous)
        _, max_unavailable = surge_and_unavailable(deployment)
        stalled_for = time.monotonic() - self._progress_at.setdefault(uid, time.monotonic())
        status, progressed = progress.calculate(
            {**deployment, "status": previous}, new_rs, old, max_unavailable=max_unavailable, stalled_for=stalled_for
        )
        if progressed:
            self._progress_at[uid] = time.monotonic()
        if status != previous:
            self._save_status(meta, status)

    def _save_status(self, meta: dict, status: dict) -> None:
        def change(obj):
            obj["status"] = status

        self.api.mutate(DEPLOYMENTS, meta["namespace"], meta["name"], change, manager=MANAGER, subresource="status")

    def _clean_history(self, deployment: dict, old: list) -> None:
        limit = deployment["spec"].get("revisionHistoryLimit", 10)
        idle = sorted(
            (rs for rs in old if not rs["spec"].get("replicas") and not _rs_status(rs).get("replicas")), key=_revision
        )
        for rs in idle[: max(0, len(idle) - limit)]:
            self.store.remove(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"])

    # --- HPA: without metrics, it only keeps the target within [minReplicas, maxReplicas] ---

    def _sync_autoscaler(self, autoscaler: dict) -> None:
        spec, meta = autoscaler["spec"], autoscaler["metadata"]
        target = spec.get("scaleTargetRef") or {}
        if target.get("kind") != "Deployment":
            return
        deployment = self.store.get(DEPLOYMENTS, meta["namespace"], target.get("name", ""))
        if deployment is None:
            return
        current = deployment["spec"].get("replicas", 1)
        wanted = min(max(current, spec.get("minReplicas", 1)), spec["maxReplicas"])
        if wanted != current:

            def scale(obj):
                obj["spec"]["replicas"] = wanted

            self.api.mutate(DEPLOYMENTS, meta["namespace"], target["name"], scale, manager=MANAGER, subresource="scale")

        def status(obj):
            obj["status"] = {**(obj.get("status") or {}), "currentReplicas": current, "desiredReplicas": wanted}

        self.api.mutate(AUTOSCALERS, meta["namespace"], meta["name"], status, manager=MANAGER, subresource="status")

    # --- ReplicaSet controller ---

    def _sync_replica_set(self, rs: dict) -> None:
        meta = rs["metadata"]
        pods = [p for p in self.store.list(PODS, meta["namespace"]) if owner_uid(p) == meta["uid"]]
        active = [p for p in pods if is_active(p)]
        wanted = rs["spec"].get("replicas", 0)
        failure = None
        if wanted > len(active) and time.monotonic() >= self._create_retry_at.get(meta["uid"], 0):
            for _ in range(wanted - len(active)):
                try:
                    active.append(self._create_pod(rs))
                except ApiError as error:
                    failure = error.message
                    break
        if failure is not None:
            # controller_utils.go createPods: a Warning event "FailedCreate", "Error creating: <err>";
            # the controller retries with a rate-limited back-off (scaled down here).
            self.recorder.record(
                rs, "Warning", "FailedCreate", f"Error creating: {failure}", component="replicaset-controller"
            )
            self._create_retry_at[meta["uid"]] = time.monotonic() + self.kubelet.backoff
        if len(active) > wanted:
            for pod in sorted(active, key=_deletion_rank)[: len(active) - wanted]:
                self.kubelet.terminate(meta["namespace"], pod["metadata"]["name"])
                self.recorder.record(
                    rs,
                    "Normal",
                    "SuccessfulDelete",
                    f"Deleted pod: {pod['metadata']['name']}",
                    component="replicaset-controller",
                )
                active.remove(pod)
        ready = sum(1 for p in active if is_ready(p))
        status = {
            k: v
            for k, v in {
                "replicas": len(active),
                "fullyLabeledReplicas": len(active),
                "readyReplicas": ready,
                "availableReplicas": ready,
            }.items()
            if v
        }
        status["observedGeneration"] = meta.get("generation", 1)
        conditions = _replica_failure(rs.get("status") or {}, failure, wanted > len(active))
        if conditions:
            status["conditions"] = conditions
        if status != rs.get("status"):

            def change(obj):
                obj["status"] = status

            self.api.mutate(REPLICASETS, meta["namespace"], meta["name"], change, manager=MANAGER, subresource="status")

    def _create_pod(self, rs: dict) -> dict:
        template = copy.deepcopy(rs["spec"]["template"])
        meta = rs["metadata"]
        pod = self.api.create_internal(
            PODS,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{meta['name']}-{random_suffix()}",
                    "generateName": f"{meta['name']}-",
                    "namespace": meta["namespace"],
                    "labels": template["metadata"].get("labels", {}),
                    "annotations": template["metadata"].get("annotations", {}),
                    "ownerReferences": [owner_reference(rs)],
                },
                "spec": {**template["spec"], "nodeName": self.kubelet.node, "serviceAccountName": "default"},
                "status": {"phase": "Pending", "qosClass": "Burstable"},
            },
            manager=MANAGER,
        )
        self.recorder.record(
            rs,
            "Normal",
            "SuccessfulCreate",
            f"Created pod: {pod['metadata']['name']}",
            component="replicaset-controller",
        )
        deployment = meta["name"][: -len(template["metadata"]["labels"][HASH_LABEL]) - 1]
        self.kubelet.start(pod, deployment=deployment)
        return pod


def _replica_failure(previous: dict, failure: str | None, short: bool) -> list:
    """replica_set_utils.go calculateStatus: a failed create sets ReplicaFailure (True,
    FailedCreate, the error) unless one is already there; a sync without error removes it. A sync
    that did not try (waiting out the back-off) while still short keeps what was there."""
    current = [c for c in previous.get("conditions") or [] if c["type"] == "ReplicaFailure"]
    if failure is not None:
        return current or [
            {
                "type": "ReplicaFailure",
                "status": "True",
                "lastTransitionTime": now(),
                "reason": "FailedCreate",
                "message": failure,
            }
        ]
    return current if short else []


def _deletion_rank(pod: dict):
    """Which pods a scale-down removes first (ActivePodsWithRanks): not ready, then pending, then
    most restarted, then newest."""
    status = pod.get("status") or {}
    restarts = sum(c.get("restartCount", 0) for c in status.get("containerStatuses") or [])
    created = datetime.strptime(pod["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ").timestamp()
    return is_ready(pod), status.get("phase") == "Running", -restarts, -created
