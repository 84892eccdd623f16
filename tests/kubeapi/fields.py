"""Field paths, the unit server-side apply tracks ownership in.

A path is a tuple of steps: a str steps into a map; a `Key` steps into an element of an
associative list (containers by name, ports by port and protocol...), as the real server's
structured-merge-diff does from the OpenAPI schema's list-map keys. Lists with no known key
are atomic: the whole list is one leaf, replaced as a unit, exactly like `args` on a real server.
An element of an associative list also owns a marker path (the path ending in its Key), so an
applier that stops sending the element gets it removed.
"""

import json
from dataclasses import dataclass

MISSING = object()
MARKER = object()  # the value recorded for an associative-list element's own path


@dataclass(frozen=True)
class Key:
    fields: tuple  # ((name, value), ...) in the key's declared order

    def matches(self, item) -> bool:
        return isinstance(item, dict) and all(_key_value(item, k) == v for k, v in self.fields)


# Merge keys of the lists Modelgate's objects contain (from the Kubernetes OpenAPI schema's
# x-kubernetes-list-map-keys). A list not named here is atomic.
_LIST_KEYS = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "conditions": ("type",),
    "imagePullSecrets": ("name",),
    "hostAliases": ("ip",),
    "ownerReferences": ("uid",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"),
}


def _key_value(item: dict, name: str):
    # The server defaults protocol to TCP before keying, so an omitted protocol keys as TCP.
    return item.get(name, "TCP" if name == "protocol" else None)


def list_keys(field: str | None, items: list) -> tuple | None:
    """The key fields of a list of maps, or None when the list is atomic."""
    if field == "ports":
        keys = (
            ("containerPort", "protocol")
            if any("containerPort" in i for i in items if isinstance(i, dict))
            else ("port", "protocol")
        )
    else:
        keys = _LIST_KEYS.get(field)
    if keys and items and all(isinstance(i, dict) and i.get(keys[0]) is not None for i in items):
        return keys
    return None


def element_key(keys: tuple, item: dict) -> Key:
    return Key(tuple((k, _key_value(item, k)) for k in keys))


def leaves(obj, prefix: tuple = (), field: str | None = None) -> dict:
    """Every leaf path of obj and its value. An empty map is a leaf (`emptyDir: {}` means something)."""
    found = {}
    if isinstance(obj, dict) and obj:
        for name, value in obj.items():
            found.update(leaves(value, prefix + (name,), name))
    elif isinstance(obj, list) and obj and (keys := list_keys(field, obj)):
        for item in obj:
            path = prefix + (element_key(keys, item),)
            found[path] = MARKER
            found.update(leaves(item, path))
    else:
        found[prefix] = obj
    return found


def get(obj, path: tuple):
    for step in path:
        if isinstance(step, Key):
            obj = next((i for i in obj if step.matches(i)), MISSING) if isinstance(obj, list) else MISSING
        else:
            obj = obj.get(step, MISSING) if isinstance(obj, dict) else MISSING
        if obj is MISSING:
            return MISSING
    return obj


def remove(obj: dict, path: tuple, keep=frozenset()) -> None:
    """Remove a leaf or a list element, and the maps and lists left empty by it (an applier that
    stops sending the last label should not leave `labels: {}` behind), except those in keep."""
    parents = [obj]
    for step in path[:-1]:
        child = get(parents[-1], (step,))
        if child is MISSING:
            return
        parents.append(child)
    for depth in range(len(path) - 1, -1, -1):
        container, step = parents[depth], path[depth]
        if isinstance(step, Key) and isinstance(container, list):
            container[:] = [i for i in container if not step.matches(i)]
        elif isinstance(container, dict):
            container.pop(step, None)
        if depth == 0 or container or path[:depth] in keep:
            return


def merge(live, applied, field: str | None = None):
    """Apply `applied` over `live`: maps merge, associative lists merge by key (applied elements
    first, in the applier's order, then elements only others set), everything else is replaced."""
    if isinstance(live, dict) and isinstance(applied, dict):
        merged = dict(live)
        for name, value in applied.items():
            merged[name] = merge(live[name], value, name) if name in live else _copy(value)
        return merged
    if isinstance(live, list) and isinstance(applied, list):
        # Both sides must be keyed the same way; an applied [] keeps what others own (their
        # elements), and the applier's own elements are then removed as dropped fields.
        keys = list_keys(field, applied + live)
        if keys:
            merged, used = [], set()
            for item in applied:
                key = element_key(keys, item)
                match = next((n for n, old in enumerate(live) if n not in used and key.matches(old)), None)
                if match is None:
                    merged.append(_copy(item))
                else:
                    used.add(match)
                    merged.append(merge(live[match], item))
            return merged + [_copy(old) for n, old in enumerate(live) if n not in used]
    return _copy(applied)


def _copy(value):
    return json.loads(json.dumps(value))


def describe(path: tuple) -> str:
    """A path as the API server prints it in conflicts: .spec.template.spec.containers[name="x"].image"""
    text = ""
    for step in path:
        if isinstance(step, Key):
            text += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in step.fields) + "]"
        else:
            text += f".{step}"
    return text


def fields_v1(paths) -> dict:
    """A set of paths in the managedFields encoding (FieldsV1): f:<field>, k:<key json>, "." for the
    element itself."""
    tree: dict = {}
    for path in sorted(paths, key=len):
        node = tree
        for step in path:
            name = (
                ("k:" + json.dumps(dict(step.fields), separators=(",", ":"))) if isinstance(step, Key) else f"f:{step}"
            )
            node = node.setdefault(name, {})
        if path and isinstance(path[-1], Key):
            node.setdefault(".", {})
    return tree
