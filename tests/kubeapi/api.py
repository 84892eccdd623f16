"""The API server's verbs over the store, without HTTP.

The HTTP layer, the simulated controllers and kubelet, and the test hooks all write through
here, so every write gets the same metadata (resourceVersion, generation, managedFields).
"""

from __future__ import annotations  # the classes below have a method named list

import copy
import threading

from . import apply as ssa
from . import podsecurity, schema, selectors, validation
from .status import ApiError, already_exists, not_found, success
from .store import Store, conflict_on_stale

_SERVER_SET = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
)


class Api:
    def __init__(self, store: Store):
        self.store = store
        # Set by the kubelet simulation: deleting a pod is graceful (it terminates first).
        self.delete_pod = None
        # Namespace labels (there are no Namespace objects): PodSecurity admission reads them.
        self.namespace_labels: dict[str, dict] = {}
        # Warnings for the response being built, per thread: the handler sends them as headers.
        self.warnings = threading.local()

    # --- reads ---

    def get(self, resource, namespace: str, name: str) -> dict:
        obj = self.store.get(resource, namespace, name)
        if obj is None:
            raise not_found(resource, name)
        return obj

    def list(
        self, resource, namespace: str | None, *, label_selector: str | None = None, field_selector: str | None = None
    ) -> dict:
        matches = self.matcher(resource, label_selector, field_selector)
        with self.store.lock:
            items = self.store.list(resource, namespace, matches)
            rv = self.store.resource_version
        for item in items:  # list items carry no apiVersion/kind, as on a real server
            item.pop("apiVersion", None)
            item.pop("kind", None)
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.group_version,
            "metadata": {"resourceVersion": str(rv)},
            "items": items,
        }

    @staticmethod
    def matcher(resource, label_selector: str | None, field_selector: str | None):
        labels = selectors.label_selector(label_selector)
        fields = selectors.field_selector(field_selector, resource)
        return lambda obj: labels((obj.get("metadata") or {}).get("labels")) and fields(obj)

    # --- writes from clients ---

    def create(self, resource, namespace: str, body, *, manager: str, dry_run: bool = False) -> dict:
        self._check_writable(resource)
        validation.check_identity(resource, body, name=None, namespace=namespace)
        obj = _client_body(resource, body)
        with self.store.lock:
            name = obj["metadata"]["name"]
            if self.store.record(resource, namespace, name):
                raise already_exists(resource, name)
            entries = ssa.update(None, obj, [], manager=manager or "unknown", api_version=resource.group_version)
            return self._save(resource, None, obj, entries, dry_run)

    def apply(
        self, resource, namespace: str, name: str, body, *, manager: str | None, force: bool, dry_run: bool = False
    ) -> tuple[dict, bool]:
        """Server-side apply: (the object as stored, whether it was created)."""
        self._check_writable(resource)
        if not manager:
            raise ApiError(
                422, 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch'
            )
        validation.check_identity(resource, body, name=name, namespace=namespace)
        schema.check_apply(resource, namespace, name, body)
        given_rv = (body.get("metadata") or {}).get("resourceVersion")
        applied = _client_body(resource, body)
        with self.store.lock:
            record = self.store.record(resource, namespace, name)
            live = copy.deepcopy(record.obj) if record else None
            if live is not None:
                conflict_on_stale(resource, name, given_rv, live)
            entries = copy.deepcopy(record.entries) if record else []
            merged, entries = ssa.apply(
                live, applied, entries, manager=manager, force=force, api_version=resource.group_version
            )
            if live is not None and _unchanged(resource, live, merged, record.entries, entries):
                return live, False  # a no-op apply writes nothing, so no watch event and no new rv
            return self._save(resource, live, merged, entries, dry_run), live is None

    def update(self, resource, namespace: str, name: str, body, *, manager: str, dry_run: bool = False) -> dict:
        """PUT: replace the object; an older resourceVersion in the body loses (409)."""
        self._check_writable(resource)
        validation.check_identity(resource, body, name=name, namespace=namespace)
        obj = _client_body(resource, body)
        with self.store.lock:
            record, live = self._live_for_write(resource, namespace, name, body)
            if resource.status_subresource and "status" in live:
                obj["status"] = live["status"]
            for stamp in _SERVER_SET:
                if stamp in live["metadata"]:
                    obj["metadata"][stamp] = live["metadata"][stamp]
            entries = ssa.update(
                live,
                obj,
                copy.deepcopy(record.entries),
                manager=manager or "unknown",
                api_version=resource.group_version,
            )
            return self._save(resource, live, obj, entries, dry_run)

    def update_status(self, resource, namespace: str, name: str, body, *, manager: str) -> dict:
        """PUT .../status: only .status is taken from the body, the rest stays as stored, so the
        generation does not move (a custom resource's status strategy keeps the old object but
        its status; its generation moves only with the main resource's non-metadata fields,
        apiextensions-apiserver pkg/registry/customresource/strategy.go PrepareForUpdate,
        lines 122-151 at commit 0304c56). An older resourceVersion in the body loses (409)."""
        if not resource.status_subresource or not resource.writable:
            raise ApiError(404, "the server could not find the requested resource")
        validation.check_identity(resource, body, name=name, namespace=namespace)
        with self.store.lock:
            record, live = self._live_for_write(resource, namespace, name, body)
            obj = copy.deepcopy(live)
            if "status" in body:
                obj["status"] = copy.deepcopy(body["status"])
            else:
                obj.pop("status", None)
            if obj == live:
                return live
            entries = ssa.update(
                live,
                obj,
                copy.deepcopy(record.entries),
                manager=manager or "unknown",
                api_version=resource.group_version,
                subresource="status",
            )
            return self._save(resource, live, obj, entries, False)

    def _live_for_write(self, resource, namespace: str, name: str, body: dict):
        """(record, a copy of the stored object) for a PUT, under the store's lock: 404 when it
        does not exist, 409 when the body names an older resourceVersion."""
        record = self.store.record(resource, namespace, name)
        if record is None:
            raise not_found(resource, name)
        live = copy.deepcopy(record.obj)
        conflict_on_stale(resource, name, (body.get("metadata") or {}).get("resourceVersion"), live)
        return record, live

    def delete(self, resource, namespace: str, name: str) -> dict:
        if not resource.deletable:
            raise ApiError(405, "the server does not allow this method on the requested resource")
        with self.store.lock:
            record = self.store.record(resource, namespace, name)
            if record is None:
                raise not_found(resource, name)
            if resource.kind == "Pod" and self.delete_pod:
                return self.delete_pod(namespace, name)
            uid = record.obj["metadata"]["uid"]
            self.store.remove(resource, namespace, name)
        return success(resource, name, uid)

    def _admit(self, resource, obj: dict) -> None:
        """Admission after validation, as the real chain orders them: PodSecurity refuses a pod
        (enforce) and warns about a workload's pod template (warn)."""
        labels = self.namespace_labels.get(obj["metadata"]["namespace"], {})
        if resource.kind == "Pod":
            podsecurity.admit_pod(labels, obj)
        elif resource.kind == "Deployment":
            self.warn(*podsecurity.pod_controller_warnings(labels, obj))

    def warn(self, *messages: str) -> None:
        pending = getattr(self.warnings, "messages", None)
        if pending is not None:
            pending.extend(messages)

    def _check_writable(self, resource) -> None:
        if not resource.writable:
            raise ApiError(
                405, f"the fake API server does not let clients write {resource.plural}: its controllers own them"
            )

    def _save(self, resource, live: dict | None, obj: dict, entries: list, dry_run: bool) -> dict:
        validation.apply_defaults(resource, obj)
        validation.validate(resource, obj, live)
        self._admit(resource, obj)
        _set_generation(resource, live, obj)
        if dry_run:
            return obj
        return self.store.put(resource, obj, entries)

    # --- writes from the simulated cluster and the test hooks ---

    def create_internal(self, resource, obj: dict, *, manager: str) -> dict:
        """A write by the simulated control plane. Pods go through admission like any create
        (the ReplicaSet controller is a client of the real API server)."""
        with self.store.lock:
            entries = ssa.update(None, obj, [], manager=manager, api_version=resource.group_version)
            validation.apply_defaults(resource, obj)
            if resource.kind == "Pod":
                self._admit(resource, obj)
            _set_generation(resource, None, obj)
            return self.store.put(resource, obj, entries)

    def mutate(
        self, resource, namespace: str, name: str, change, *, manager: str, subresource: str = ""
    ) -> dict | None:
        """An Update by `manager`: change(obj) edits a copy in place. Writes only if something changed;
        returns the stored object, or None if it is gone."""
        with self.store.lock:
            record = self.store.record(resource, namespace, name)
            if record is None:
                return None
            live = copy.deepcopy(record.obj)
            obj = copy.deepcopy(live)
            change(obj)
            if obj == live:
                return live
            entries = ssa.update(
                live,
                obj,
                copy.deepcopy(record.entries),
                manager=manager,
                api_version=resource.group_version,
                subresource=subresource,
            )
            _set_generation(resource, live, obj)
            return self.store.put(resource, obj, entries)


def _client_body(resource, body: dict) -> dict:
    """What a client may set: server-set metadata is dropped, and so is .status where a status
    subresource exists (the real server ignores it on the main resource)."""
    obj = copy.deepcopy(body)
    for stamp in _SERVER_SET:
        obj["metadata"].pop(stamp, None)
    if resource.status_subresource:
        obj.pop("status", None)
    return obj


def _set_generation(resource, live: dict | None, obj: dict) -> None:
    if not resource.generation:
        return
    if live is None:
        obj["metadata"]["generation"] = 1
    else:
        previous = live["metadata"].get("generation", 1)
        obj["metadata"]["generation"] = previous + (1 if obj.get("spec") != live.get("spec") else 0)


def _unchanged(resource, live: dict, merged: dict, old_entries: list, new_entries: list) -> bool:
    def plain(obj):
        obj = copy.deepcopy(obj)
        obj["metadata"].pop("managedFields", None)
        return obj

    def owners(entries):
        return sorted((e.manager, e.operation, e.subresource, sorted(map(repr, e.paths))) for e in entries)

    candidate = copy.deepcopy(merged)
    validation.apply_defaults(resource, candidate)
    return plain(live) == plain(candidate) and owners(old_entries) == owners(new_entries)
