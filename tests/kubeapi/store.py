"""Objects, the global resourceVersion and the watch history, like etcd plus the watch cache.

Every write bumps one cluster-wide counter and records one event, so a watch can resume from
any resourceVersion still in the bounded history; older ones answer 410 Expired, as the real
watch cache does once etcd has compacted.
"""

from __future__ import annotations  # the classes below have a method named list

import copy
import itertools
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field

from .apply import Entry, now
from .status import ApiError


@dataclass
class Record:
    obj: dict
    entries: list = field(default_factory=list)  # managedFields, as apply.Entry


@dataclass(frozen=True)
class WatchEvent:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    plural: str
    namespace: str
    obj: dict


class Expired(Exception):
    def __init__(self, requested: int, oldest: int):
        super().__init__(f"too old resource version: {requested} ({oldest})")


class Store:
    def __init__(self, history: int = 2000):
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._records: dict[tuple, Record] = {}
        self._rv = 1000  # real clusters never start at 1; clients must not assume small numbers
        self._history: deque[WatchEvent] = deque(maxlen=history)
        self._first_rv = self._rv + 1  # the rv of the oldest event a watch can still replay
        self.stopped = False

    @property
    def resource_version(self) -> int:
        with self.lock:
            return self._rv

    def record(self, resource, namespace: str, name: str) -> Record | None:
        """The stored record itself, for writers holding the lock; readers use get()."""
        return self._records.get((resource.plural, namespace, name))

    def get(self, resource, namespace: str, name: str) -> dict | None:
        with self.lock:
            record = self.record(resource, namespace, name)
            return copy.deepcopy(record.obj) if record else None

    def list(self, resource, namespace: str | None = None, predicate=None) -> list[dict]:
        with self.lock:
            found = [
                r.obj
                for (plural, ns, _), r in self._records.items()
                if plural == resource.plural and namespace in (None, ns)
            ]
            return [
                copy.deepcopy(o)
                for o in sorted(found, key=lambda o: o["metadata"]["name"])
                if predicate is None or predicate(o)
            ]

    def put(self, resource, obj: dict, entries: list[Entry]) -> dict:
        """Store obj (new or replacing), stamping identity, resourceVersion and managedFields."""
        with self.lock:
            meta = obj["metadata"]
            key = (resource.plural, meta["namespace"], meta["name"])
            old = self._records.get(key)
            if old is None:
                meta["uid"] = str(uuid.uuid4())
                meta["creationTimestamp"] = now()
            else:
                for stamp in ("uid", "creationTimestamp"):
                    meta[stamp] = old.obj["metadata"][stamp]
            self._rv += 1
            meta["resourceVersion"] = str(self._rv)
            if entries:
                meta["managedFields"] = [e.as_json() for e in entries]
            else:
                meta.pop("managedFields", None)
            stored = copy.deepcopy(obj)
            stored.setdefault("apiVersion", resource.group_version)
            stored.setdefault("kind", resource.kind)
            self._records[key] = Record(stored, [copy.deepcopy(e) for e in entries])
            self._record_event("ADDED" if old is None else "MODIFIED", resource, stored)
            return copy.deepcopy(stored)

    def remove(self, resource, namespace: str, name: str) -> dict:
        with self.lock:
            record = self._records.pop((resource.plural, namespace, name), None)
            if record is None:
                raise KeyError(name)
            self._rv += 1
            # A DELETED event carries the object at the deletion's resourceVersion, as on a real server.
            record.obj["metadata"]["resourceVersion"] = str(self._rv)
            self._record_event("DELETED", resource, record.obj)
            return copy.deepcopy(record.obj)

    def _record_event(self, kind: str, resource, obj: dict) -> None:
        if len(self._history) == self._history.maxlen:
            self._first_rv = self._history[1].rv
        self._history.append(
            WatchEvent(self._rv, kind, resource.plural, obj["metadata"]["namespace"], copy.deepcopy(obj))
        )
        self.changed.notify_all()

    # --- watch ---

    def check_watchable(self, rv: int) -> None:
        with self.lock:
            if rv < self._first_rv - 1:
                raise Expired(rv, self._first_rv - 1)

    def events_after(self, rv: int, timeout: float) -> list[WatchEvent]:
        """Events newer than rv, waiting up to timeout for the first one."""
        with self.changed:
            if rv < self._first_rv - 1:
                raise Expired(rv, self._first_rv - 1)
            if rv >= self._rv and not self.stopped:
                self.changed.wait(timeout)
            if rv < self._first_rv - 1:
                raise Expired(rv, self._first_rv - 1)
            start = max(0, rv - self._first_rv + 1)
            return list(itertools.islice(self._history, start, None))

    def retained(self) -> list[WatchEvent]:
        with self.lock:
            return list(self._history)

    def expire_history(self) -> None:
        """Forget every past event, as a compaction does: watches from any earlier rv get 410."""
        with self.lock:
            self._history.clear()
            self._first_rv = self._rv + 1
            self.changed.notify_all()

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            self.changed.notify_all()


def conflict_on_stale(resource, name: str, given: str | None, current: dict) -> None:
    """Optimistic concurrency: a write naming an older resourceVersion loses."""
    if given and given != current["metadata"]["resourceVersion"]:
        raise ApiError(
            409,
            f'Operation cannot be fulfilled on {resource.qualified} "{name}": the object has been '
            "modified; please apply your changes to the latest version and try again",
            details={"name": name, "group": resource.group, "kind": resource.plural},
        )
