"""Drift: what differs between the objects a revision applied and what runs now.

A pure function of two lists of plain dicts. Only the fields that change what is served
are compared (image, arguments, replicas, the model version, the served config, ports);
everything the cluster adds by itself (status, defaults, managedFields) is ignored.
"""


def _container(obj: dict, name: str = "tensorflow-serving") -> dict:
    containers = (((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return next((c for c in containers if c.get("name") == name), {})


def _deployment_fields(obj: dict, *, with_replicas: bool) -> dict:
    template = (obj.get("spec") or {}).get("template") or {}
    container = _container(obj)
    fields = {
        "image": container.get("image"),
        "args": container.get("args"),
        "model version": ((template.get("metadata") or {}).get("labels") or {}).get("modelgate.io/version"),
        "config volume": next(
            (
                v.get("configMap", {}).get("name")
                for v in (template.get("spec") or {}).get("volumes") or []
                if v.get("name") == "config"
            ),
            None,
        ),
    }
    if with_replicas:
        fields["replicas"] = (obj.get("spec") or {}).get("replicas")
    return fields


def _fields(obj: dict, *, with_replicas: bool) -> dict:
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Deployment":
        return _deployment_fields(obj, with_replicas=with_replicas)
    if kind == "ConfigMap":
        return {f"data[{key}]": value for key, value in sorted((obj.get("data") or {}).items())}
    if kind == "Service":
        return {"ports": spec.get("ports"), "selector": spec.get("selector")}
    if kind == "HorizontalPodAutoscaler":
        return {"minReplicas": spec.get("minReplicas"), "maxReplicas": spec.get("maxReplicas")}
    if kind == "LocalModelServer":
        return {
            "models.config": spec.get("modelsConfig"),
            "port": spec.get("port"),
            "running": (obj.get("status") or {}).get("running", True),
        }
    return {}


def diff(applied: list[dict], live: list[dict | None]) -> list[dict]:
    """[{"object", "field", "applied", "live"}] for every difference; empty when in sync."""
    # With an autoscaler the replica count is the HPA's to change, not drift.
    with_replicas = not any(o.get("kind") == "HorizontalPodAutoscaler" for o in applied)
    changes: list[dict] = []
    for want, have in zip(applied, live, strict=True):
        label = f"{want.get('kind')}/{(want.get('metadata') or {}).get('name')}"
        if have is None:
            changes.append({"object": label, "field": "(object)", "applied": "present", "live": "missing"})
            continue
        wanted, found = _fields(want, with_replicas=with_replicas), _fields(have, with_replicas=with_replicas)
        if want.get("kind") == "LocalModelServer":
            wanted["running"] = True
        for key in wanted:
            if wanted[key] != found.get(key):
                changes.append({"object": label, "field": key, "applied": wanted[key], "live": found.get(key)})
    return changes
