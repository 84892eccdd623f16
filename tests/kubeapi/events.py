"""core/v1 Events, aggregated as the kubelet's event correlator does: the same reason and
message for the same object bumps count and lastTimestamp instead of adding a new Event."""

import secrets

from .apply import now
from .resources import by_name

EVENTS = by_name("events")


class Recorder:
    def __init__(self, api, host: str):
        self.api = api
        self.host = host
        self._seen: dict[tuple, str] = {}  # (uid, type, reason, message) -> event name

    def record(
        self, obj: dict, event_type: str, reason: str, message: str, *, component: str, field_path: str = ""
    ) -> None:
        meta = obj["metadata"]
        key = (meta.get("uid"), event_type, reason, message)
        with self.api.store.lock:
            name = self._seen.get(key)
            if name and self.api.mutate(EVENTS, meta["namespace"], name, _bump, manager=component):
                return
            involved = {
                "kind": obj.get("kind"),
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta.get("uid"),
                "apiVersion": obj.get("apiVersion"),
                "resourceVersion": meta.get("resourceVersion"),
            }
            if field_path:
                involved["fieldPath"] = field_path
            stamp = now()
            name = f"{meta['name']}.{secrets.token_hex(8)}"
            event = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": meta["namespace"]},
                "involvedObject": involved,
                "reason": reason,
                "message": message,
                "type": event_type,
                "count": 1,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "source": {"component": component, **({"host": self.host} if component == "kubelet" else {})},
                "reportingComponent": component,
                "reportingInstance": self.host if component == "kubelet" else "",
            }
            self.api.create_internal(EVENTS, event, manager=component)
            self._seen[key] = name


def _bump(event: dict) -> None:
    event["count"] = event.get("count", 1) + 1
    event["lastTimestamp"] = now()
