"""Server-side apply and field ownership, at leaf-path granularity.

Follows the real server's rules (sigs.k8s.io/structured-merge-diff) where they matter here:
- an apply owns every leaf it sends; leaves it sent before and omits now are removed, unless
  another manager also owns them;
- a leaf another manager owns with a different value is a conflict (409) unless force=true,
  which moves ownership to the applier; owning the same value is shared ownership;
- an update (PUT, or the test's `edit`) takes ownership of what it changed, without conflicts.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime

from . import fields as f
from .status import ApiError

# Identity and server-set fields: nobody owns them and an apply cannot change them.
_UNOWNED = {
    ("apiVersion",),
    ("kind",),
    ("metadata", "name"),
    ("metadata", "namespace"),
    ("metadata", "uid"),
    ("metadata", "resourceVersion"),
    ("metadata", "generation"),
    ("metadata", "creationTimestamp"),
    ("metadata", "managedFields"),
    ("metadata", "deletionTimestamp"),
    ("metadata", "deletionGracePeriodSeconds"),
    ("metadata", "selfLink"),
}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Entry:
    manager: str
    operation: str  # Apply or Update
    api_version: str
    paths: set = field(default_factory=set)
    subresource: str = ""
    time: str = field(default_factory=now)

    def as_json(self) -> dict:
        entry = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": f.fields_v1(self.paths),
        }
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


def owned_leaves(obj: dict, *, with_status: bool = False) -> dict:
    found = f.leaves(obj)
    return {
        p: v
        for p, v in found.items()
        if not any(p[: len(u)] == u for u in _UNOWNED) and (with_status or p[:1] != ("status",))
    }


def apply(
    live: dict | None, applied: dict, entries: list[Entry], *, manager: str, force: bool, api_version: str
) -> tuple[dict, list[Entry]]:
    """(the merged object, the new managedFields entries); raises a 409 ApiError on conflicts."""
    new_leaves = owned_leaves(applied)
    if live is None:
        return f.merge({}, applied), [Entry(manager, "Apply", api_version, set(new_leaves))]
    mine = next((e for e in entries if e.manager == manager and e.operation == "Apply"), None)
    others = [e for e in entries if e is not mine and not e.subresource]
    conflicts = [
        (path, e)
        for e in others
        for path in sorted(e.paths & set(new_leaves), key=f.describe)
        if new_leaves[path] is not f.MARKER and f.get(live, path) != new_leaves[path]
    ]
    if conflicts and not force:
        raise _conflict_error(conflicts, applied)
    for path, entry in conflicts:
        entry.paths.discard(path)
    result = f.merge(live, applied)
    others_own = set().union(*(e.paths for e in others)) if others else set()
    dropped = (mine.paths if mine else set()) - set(new_leaves) - others_own
    keep = set(new_leaves) | others_own
    for path in sorted(dropped, key=len):  # an element before its fields, so its key still matches
        if _removable(path, others_own, new_leaves):
            f.remove(result, path, keep)
    entry = Entry(manager, "Apply", api_version, set(new_leaves))
    kept = [e for e in entries if e is not mine and e.paths]
    return result, kept + [entry]


def _removable(path: tuple, others_own: set, new_leaves: dict) -> bool:
    if any(len(p) > len(path) and p[: len(path)] == path for p in new_leaves):
        return False  # was a leaf (`emptyDir: {}`), now has applied fields inside
    if isinstance(path[-1], f.Key):
        # An element stays while another manager owns any field inside it.
        return not any(p[: len(path)] == path for p in others_own)
    enclosing = path[-2] if len(path) > 1 else None
    # The key fields of an element that stays are part of its identity.
    return not (isinstance(enclosing, f.Key) and path[-1] in dict(enclosing.fields))


def update(
    before: dict | None, after: dict, entries: list[Entry], *, manager: str, api_version: str, subresource: str = ""
) -> list[Entry]:
    """Ownership after a non-apply write: the writer owns what it changed; removed fields are
    nobody's any more."""
    with_status = subresource == "status"
    old = owned_leaves(before or {}, with_status=with_status)
    new = owned_leaves(after, with_status=with_status)
    if with_status:  # a status write touches only status
        old = {p: v for p, v in old.items() if p[:1] == ("status",)}
        new = {p: v for p, v in new.items() if p[:1] == ("status",)}
    changed = {p for p, v in new.items() if p not in old or old[p] != v}
    removed = set(old) - set(new)
    if not changed and not removed:
        return entries
    for entry in entries:
        entry.paths -= removed | changed
    mine = next(
        (e for e in entries if e.manager == manager and e.operation == "Update" and e.subresource == subresource), None
    )
    if mine is None:
        mine = Entry(manager, "Update", api_version, subresource=subresource)
        entries = entries + [mine]
    mine.paths |= changed
    mine.time = now()
    return [e for e in entries if e.paths]


def _conflict_error(conflicts: list, applied: dict) -> ApiError:
    """Worded as kube-apiserver words it, e.g.
    Apply failed with 1 conflict: conflict with "kubectl-edit" using apps/v1: .spec.replicas"""
    count = len(conflicts)
    by_manager: dict = {}
    for path, entry in conflicts:
        by_manager.setdefault((entry.manager, entry.api_version), []).append(f.describe(path))
    parts = []
    for (manager, api_version), paths in by_manager.items():
        if len(paths) == 1:
            parts.append(f'conflict with "{manager}" using {api_version}: {paths[0]}')
        else:
            parts.append(f'conflicts with "{manager}" using {api_version}:\n' + "\n".join(f"- {p}" for p in paths))
    plural = "conflict" if count == 1 else "conflicts"
    message = f"Apply failed with {count} {plural}: " + "\n".join(parts)
    meta = applied.get("metadata") or {}
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f'conflict with "{e.manager}" using {e.api_version}',
            "field": f.describe(p),
        }
        for p, e in conflicts
    ]
    return ApiError(409, message, reason="Conflict", details={"name": meta.get("name", ""), "causes": causes})
